/**
 * `truth.json` + `truth-active.bin`: the ground truth written beside a synthetic
 * dataset's manifest, read back by ground-truth scoring.
 *
 * truth.json (format "arbor-synth-truth", version 1):
 *   d_in, features (m), tokens, seed, params {epsilon, sibling_epsilon, noise,
 *   magnitude_std, keep_empty}, p_empty, expected_cosines {child_parent, siblings},
 *   tree (toy-model JSON), paths[m], parents[m] (−1 = top-level), levels[m],
 *   nominal_rates[m] (expected per-token rates of this dataset, i.e. the tree's rates over
 *   1 − p_empty when empty rows were redrawn),
 *   empirical_rates[m], directions[m][d] (unit rows), activity {file, bytes_per_row}.
 * truth-active.bin: the per-token true activity, a bitset [tokens, W], W = ceil(m/8):
 *   bit (f & 7) of byte (f >> 3) of row t is set iff true feature f fired on token t.
 *   Rows are in dataset order, so scoring must encode the dataset unshuffled.
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import { expectedCosines } from "./directions.ts";
import type { SynthGenerator, SynthParams } from "./generator.ts";
import { treeToJson } from "./tree.ts";
import type { TreeNodeJson } from "./tree.ts";

/** Format name in truth.json. */
export const TRUTH_FORMAT = "arbor-synth-truth";
/** Current truth.json version. */
export const TRUTH_VERSION = 1;
/** File names inside the dataset folder. */
export const TRUTH_FILE = "truth.json";
/** Per-token activity bitset file. */
export const ACTIVITY_FILE = "truth-active.bin";

/** The on-disk truth.json. */
export interface TruthJson {
  format: string;
  version: number;
  d_in: number;
  features: number;
  tokens: number;
  seed: number;
  params: {
    epsilon: number;
    sibling_epsilon: number;
    noise: number;
    magnitude_std: number;
    keep_empty: boolean;
  };
  /** P(a draw from the tree has no feature firing); such rows are redrawn unless keep_empty. */
  p_empty: number;
  expected_cosines: { child_parent: number; siblings: number };
  tree: TreeNodeJson;
  paths: string[];
  parents: number[];
  levels: number[];
  nominal_rates: number[];
  empirical_rates: number[];
  directions: number[][];
  activity: { file: string; bytes_per_row: number };
}

/** Ground truth in memory (what scoring needs). */
export interface Truth {
  dIn: number;
  /** Number of true features m. */
  features: number;
  tokens: number;
  /** Unit directions [m, d]. */
  directions: Float32Array;
  /** Per true feature: parent feature, −1 for top-level. */
  parents: Int32Array;
  levels: Int32Array;
  nominalRates: Float64Array;
  empiricalRates: Float64Array;
  /** Activity bytes per row W. */
  activityWidth: number;
  /** The parsed truth.json. */
  json: TruthJson;
}

/** The truth.json content for a generator that has produced all its rows. */
export function truthJson(gen: SynthGenerator): TruthJson {
  const p: SynthParams = gen.params;
  const m = gen.features;
  const d = p.dIn;
  const cos = expectedCosines(p);
  return {
    format: TRUTH_FORMAT,
    version: TRUTH_VERSION,
    d_in: d,
    features: m,
    tokens: gen.produced,
    seed: p.seed,
    params: {
      epsilon: p.epsilon,
      sibling_epsilon: p.siblingEpsilon,
      noise: p.noise,
      magnitude_std: p.magnitudeStd,
      keep_empty: p.keepEmpty ?? false,
    },
    p_empty: gen.emptyProbability,
    expected_cosines: { child_parent: cos.childParent, siblings: cos.siblings },
    tree: treeToJson(gen.tree.root),
    paths: gen.tree.features.map((n) => n.path),
    parents: Array.from(gen.tree.parents),
    levels: Array.from(gen.tree.levels),
    nominal_rates: Array.from(gen.expectedRates()),
    empirical_rates: Array.from(gen.empiricalRates()),
    directions: Array.from(
      { length: m },
      (_, f) => Array.from(gen.directions.subarray(f * d, (f + 1) * d)),
    ),
    activity: { file: ACTIVITY_FILE, bytes_per_row: gen.width },
  };
}

/** Turn a truth.json object into typed arrays, checking shapes; `file` names errors. */
export function truthFromJson(json: TruthJson, file: string): Truth {
  if (json.format !== TRUTH_FORMAT) {
    throw new DataError(`${file}: format is "${json.format}", expected "${TRUTH_FORMAT}"`);
  }
  if (json.version !== TRUTH_VERSION) {
    throw new DataError(
      `${file}: version ${json.version} is not supported (this Arbor reads ${TRUTH_VERSION})`,
    );
  }
  const m = json.features;
  const d = json.d_in;
  const lengths: [string, number][] = [
    ["parents", json.parents?.length],
    ["levels", json.levels?.length],
    ["nominal_rates", json.nominal_rates?.length],
    ["empirical_rates", json.empirical_rates?.length],
    ["directions", json.directions?.length],
  ];
  for (const [field, len] of lengths) {
    if (len !== m) {
      throw new DataError(`${file}: ${field} has ${len} entries, expected features = ${m}`);
    }
  }
  const directions = new Float32Array(m * d);
  json.directions.forEach((row, f) => {
    if (row.length !== d) {
      throw new DataError(
        `${file}: directions[${f}] has ${row.length} values, expected d_in = ${d}`,
      );
    }
    directions.set(row, f * d);
  });
  for (let f = 0; f < m; f++) {
    const p = json.parents[f];
    if (!Number.isInteger(p) || p < -1 || p >= m || p === f) {
      throw new DataError(`${file}: parents[${f}] = ${p} is not -1 or another feature index`);
    }
  }
  return {
    dIn: d,
    features: m,
    tokens: json.tokens,
    directions,
    parents: Int32Array.from(json.parents),
    levels: Int32Array.from(json.levels),
    nominalRates: Float64Array.from(json.nominal_rates),
    empiricalRates: Float64Array.from(json.empirical_rates),
    activityWidth: json.activity.bytes_per_row,
    json,
  };
}

/** Read `truth.json` from a dataset folder; null when the dataset has none (not synthetic). */
export async function readTruth(dir: string): Promise<Truth | null> {
  const file = join(dir, TRUTH_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new DataError(`${file}: cannot read (${(e as Error).message})`);
  }
  let json: TruthJson;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new DataError(
      `${file}: not valid JSON (${(e as Error).message}); regenerate with \`arbor synth\``,
    );
  }
  return truthFromJson(json, file);
}

/**
 * Read rows [start, start+rows) of the per-token activity bitset ([rows, W] bytes).
 * Throws naming the file when it is missing or shorter than the truth says.
 */
export async function readTruthActivity(
  dir: string,
  truth: Truth,
  start = 0,
  rows = truth.tokens - start,
): Promise<Uint8Array> {
  const file = join(dir, truth.json.activity.file);
  const W = truth.activityWidth;
  let fh: Deno.FsFile;
  try {
    fh = await Deno.open(file, { read: true });
  } catch (e) {
    throw new DataError(
      `${file}: cannot open the activity record (${
        (e as Error).message
      }); regenerate with \`arbor synth\``,
    );
  }
  try {
    const size = (await fh.stat()).size;
    if (size !== truth.tokens * W) {
      throw new DataError(
        `${file}: ${size} bytes, expected tokens × bytes_per_row = ${truth.tokens} × ${W}; regenerate with \`arbor synth\``,
      );
    }
    if (start < 0 || rows < 0 || start + rows > truth.tokens) {
      throw new DataError(
        `${file}: rows [${start}, ${start + rows}) are outside the ${truth.tokens} tokens`,
      );
    }
    const out = new Uint8Array(rows * W);
    await fh.seek(start * W, Deno.SeekMode.Start);
    let off = 0;
    while (off < out.length) {
      const n = await fh.read(out.subarray(off));
      if (n === null) throw new DataError(`${file}: ended early at byte ${start * W + off}`);
      off += n;
    }
    return out;
  } finally {
    fh.close();
  }
}
