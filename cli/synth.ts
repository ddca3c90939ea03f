/** `arbor synth`: generate a synthetic activation dataset from a known feature tree. */
import { type CommandSpec, type ParsedCommand, requireString, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { writeSynthDataset } from "../lib/synth/dataset.ts";
import { DEFAULT_SYNTH_PARAMS, DEFAULT_TREE_PARAMS } from "../lib/synth/default.ts";
import type { SynthParams } from "../lib/synth/generator.ts";
import {
  type FeatureTree,
  parseTree,
  readTreeFile,
  treeFromParams,
  type TreeParams,
} from "../lib/synth/tree.ts";
import type { TruthJson } from "../lib/synth/truth.ts";

const T = DEFAULT_TREE_PARAMS;
const S = DEFAULT_SYNTH_PARAMS;

/** Tree-shape flags: only without --tree; their defaults live in the help text so a clash is detectable. */
const TREE_FLAGS = ["depth", "branching", "top-mass", "child-mass", "zipf", "exclusive", "binary"];

/** Flags of `synth`. */
export const spec: CommandSpec = {
  name: "synth",
  summary: "generate a synthetic activation dataset from a known feature tree",
  usage: "deno run -A cli/main.ts synth --out DIR [--tree tree.json | --branching a,b,...] [flags]",
  flags: {
    out: {
      type: "string",
      help: "output dataset folder (manifest, shards, truth.json, truth-active.bin)",
    },
    tree: {
      type: "string",
      help: "feature tree JSON (Matryoshka-SAE toy schema: active_prob, is_read_out, " +
        "mutually_exclusive_children, is_binary, children)",
    },
    depth: {
      type: "int",
      help: `levels of the generated tree (default: length of --branching, ${T.branching.length})`,
    },
    branching: {
      type: "list",
      help: `children per node at each level, top level first; one value repeats --depth times ` +
        `(default: ${T.branching.join(",")})`,
    },
    "top-mass": {
      type: "number",
      help: `expected top-level features firing per token (default: ${T.topMass})`,
    },
    "child-mass": {
      type: "number",
      help:
        `expected children firing given their parent fires, <= 1 if exclusive (default: ${T.childMass})`,
    },
    zipf: {
      type: "number",
      help: `sibling i fires with probability ∝ (i+1)^-zipf (default: ${T.zipf})`,
    },
    exclusive: {
      type: "boolean",
      help:
        `children of a node are mutually exclusive; --no-exclusive: independent (default: ${T.exclusive})`,
    },
    binary: {
      type: "boolean",
      help: `binary features (magnitude 1) instead of noisy magnitudes (default: ${T.binary})`,
    },
    "d-in": { type: "int", default: S.dIn, help: "width of the activation vectors" },
    tokens: { type: "int", default: S.tokens, help: "rows (tokens) to generate" },
    seed: { type: "int", default: S.seed, help: "random seed (directions and samples)" },
    epsilon: {
      type: "number",
      default: S.epsilon,
      help: "cosine of a child's direction with its parent's",
    },
    "sibling-epsilon": {
      type: "number",
      default: S.siblingEpsilon,
      help: "share of a common direction among siblings (adds to their cosine)",
    },
    noise: {
      type: "number",
      default: S.noise,
      help: "std of the additive Gaussian noise per coordinate",
    },
    "magnitude-std": {
      type: "number",
      default: S.magnitudeStd,
      help: "std of non-binary magnitudes (mean 1) unless a node sets magnitude_std",
    },
    "keep-empty": {
      type: "boolean",
      help: "keep rows on which no feature fires (pure noise); by default they are redrawn",
    },
    dtype: { type: "string", default: "f32", help: "shard element type: f32 or f16" },
    "shard-tokens": { type: "int", help: "rows per shard (default: 64 MiB shards)" },
    overwrite: { type: "boolean", help: "replace a dataset already in --out" },
  },
  examples: [
    "deno run -A cli/main.ts synth --out runs/synth                  # the demo's default dataset",
    "deno run -A cli/main.ts synth --out runs/toy --tree tree.json --d-in 20 --tokens 100000",
    "deno run -A cli/main.ts synth --out runs/deep --branching 4 --depth 4 --d-in 64 --epsilon 0.3",
  ],
};

/** Tree and generator settings from parsed flags; throws UsageError naming the flag. */
export async function synthSettingsFromFlags(
  parsed: ParsedCommand,
): Promise<{ tree: FeatureTree; params: SynthParams; source: string }> {
  const f = parsed.flags;
  let tree: FeatureTree;
  let source: string;
  if (typeof f.tree === "string") {
    const clash = TREE_FLAGS.filter((name) => f[name] !== undefined);
    if (clash.length) {
      throw new UsageError(`synth: --tree gives the whole tree; drop --${clash.join(", --")}`);
    }
    tree = await readTreeFile(f.tree);
    source = f.tree;
  } else {
    let branching = (f.branching as number[] | undefined) ?? T.branching;
    const depth = f.depth as number | undefined;
    if (depth !== undefined) {
      if (depth < 1) throw new UsageError(`synth: --depth must be >= 1, got ${depth}`);
      if (branching.length === 1) branching = Array(depth).fill(branching[0]);
      else if (branching.length !== depth) {
        throw new UsageError(
          `synth: --branching has ${branching.length} levels but --depth is ${depth}; give one value or ${depth}`,
        );
      }
    }
    const params: TreeParams = {
      branching,
      topMass: (f["top-mass"] as number | undefined) ?? T.topMass,
      childMass: (f["child-mass"] as number | undefined) ?? T.childMass,
      zipf: (f.zipf as number | undefined) ?? T.zipf,
      exclusive: (f.exclusive as boolean | undefined) ?? T.exclusive,
      binary: (f.binary as boolean | undefined) ?? T.binary,
    };
    tree = parseTree(treeFromParams(params), "generated tree");
    source = `generated (branching ${branching.join(",")})`;
  }
  const params: SynthParams = {
    dIn: f["d-in"] as number,
    tokens: f.tokens as number,
    seed: f.seed as number,
    epsilon: f.epsilon as number,
    siblingEpsilon: f["sibling-epsilon"] as number,
    noise: f.noise as number,
    magnitudeStd: f["magnitude-std"] as number,
    keepEmpty: f["keep-empty"] === true,
  };
  return { tree, params, source };
}

/** A few lines describing a generated dataset. */
export function synthSummary(
  dir: string,
  truth: TruthJson,
  source: string,
  seconds: number,
): string {
  const m = truth.features;
  const levels = new Map<number, number>();
  for (const l of truth.levels) levels.set(l, (levels.get(l) ?? 0) + 1);
  const perLevel = [...levels.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c).join(" + ");
  const rates = truth.empirical_rates;
  const fmt = (x: number) => x.toPrecision(3);
  const l0 = rates.reduce((a, b) => a + b, 0);
  return [
    `synth: wrote ${truth.tokens} tokens × d_in ${truth.d_in} to ${dir} in ${seconds.toFixed(1)} s`,
    `  tree: ${source}; ${m} true features (${perLevel} per level), ${fmt(m / truth.d_in)}× d_in`,
    `  firing rate: ${fmt(Math.min(...rates))} .. ${fmt(Math.max(...rates))}, mean true L0 ${
      fmt(l0)
    }`,
    `  directions: cos(child, parent) = ${fmt(truth.expected_cosines.child_parent)}, ` +
    `cos(siblings) = ${
      fmt(truth.expected_cosines.siblings)
    }; noise ${truth.params.noise}, seed ${truth.seed}`,
    `  truth: truth.json, truth-active.bin (per-token true activity)`,
  ].join("\n");
}

/** Generate the dataset and print a summary. */
export const command: Command = {
  spec,
  async run(parsed) {
    const out = requireString(parsed.flags, "out", "synth");
    const dtype = parsed.flags.dtype;
    if (dtype !== "f32" && dtype !== "f16") {
      throw new UsageError(`synth: --dtype must be f32 or f16, got "${dtype}"`);
    }
    const { tree, params, source } = await synthSettingsFromFlags(parsed);
    const t0 = performance.now();
    const shardTokens = parsed.flags["shard-tokens"] as number | undefined;
    const res = await writeSynthDataset(out, {
      tree,
      params,
      dtype,
      overwrite: parsed.flags.overwrite === true,
      ...(shardTokens !== undefined ? { shardTokens } : {}),
    });
    console.log(synthSummary(out, res.truth, source, (performance.now() - t0) / 1000));
    return 0;
  },
};
