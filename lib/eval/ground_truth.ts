/**
 * Ground-truth scoring on the synthetic benchmark: how well an SAE recovered the planted
 * features (lib/synth) and their hierarchy.
 *
 * Shapes: d = d_in, n = learned features, m = true features, T = tokens, K = code slots,
 * W = true-activity bytes per row (lib/synth/truth.ts).
 * - Matching: Hungarian assignment (npm `munkres`) of true to learned features maximising
 *   the total cosine between true directions [m, d] and learned decoder rows [n, d]
 *   (signed cosine: activations are non-negative, so a flipped direction is wrong).
 *   With n ≥ m every true feature gets a distinct learned one.
 * - meanCosine: mean over the m true features of the matched cosine (unmatched → 0).
 * - recovered: fraction of true features whose matched cosine > RECOVERED_COSINE.
 * - parentAccuracy: over true children c with true parent p where both are matched,
 *   the fraction with learnedParent(match[c]) === match[p]. learnedParent is the Tree
 *   SAE's tree (−1 = root), or for flat SAEs the latent with the highest activation
 *   coverage S_cov(p', c') = #{t: p', c' fire} / #{t: c' fires} (paper Eq. 4, the binary
 *   non-scaled MCS of App. I), ties broken by the rarer p' (more specific), then lower index;
 *   −1 when c' never co-fires with anything.
 * - absorption: over (token, true parent p with children) events where p and at least one
 *   of its true children are active (the only events where absorption can happen), the
 *   fraction where p's matched latent is silent while the matched latent of an active true
 *   child fires. Events whose parent is unmatched are skipped.
 * "Fires" is val > FIRE_THRESHOLD (1e-3), as everywhere in Arbor.
 */
import { munkres } from "munkres";
import { join } from "node:path";
import { DataError } from "../errors.ts";
import { readTruth, readTruthActivity, TRUTH_FILE } from "../synth/truth.ts";
import { FIRE_THRESHOLD, type SparseCodes, UNUSED_SLOT } from "./sparse_codes.ts";

/** A matched cosine above this counts as recovered (issue #5). */
export const RECOVERED_COSINE = 0.9;

/** Hungarian matching of true to learned features. */
export interface FeatureMatch {
  /** Per true feature: matched learned feature, −1 when unmatched (n < m) [m]. */
  match: Int32Array;
  /** Per true feature: cosine with its match (0 when unmatched) [m]. */
  cosine: Float32Array;
}

/**
 * Match true directions [m, d] to learned decoder rows [n, d] by maximum total cosine
 * (Hungarian algorithm from the `munkres` package).
 */
export function matchFeatures(
  decoder: Float32Array,
  truthDirections: Float32Array,
  d: number,
): FeatureMatch {
  const n = decoder.length / d;
  const m = truthDirections.length / d;
  if (!Number.isInteger(n) || !Number.isInteger(m)) {
    throw new RangeError(
      `ground truth: decoder (${decoder.length}) or truth (${truthDirections.length}) is not a multiple of d = ${d}`,
    );
  }
  const cos = cosineMatrix(truthDirections, m, decoder, n, d);
  const cost: Float64Array[] = [];
  for (let i = 0; i < m; i++) cost.push(cos.subarray(i * n, (i + 1) * n).map((c) => -c));
  const match = new Int32Array(m).fill(-1);
  const cosine = new Float32Array(m);
  if (m > 0 && n > 0) {
    for (const [i, j] of munkres(cost)) {
      match[i] = j;
      cosine[i] = cos[i * n + j];
    }
  }
  return { match, cosine };
}

/** Cosines [m, n] between the rows of a [m, d] and b [n, d]; zero rows give 0. */
export function cosineMatrix(
  a: Float32Array,
  m: number,
  b: Float32Array,
  n: number,
  d: number,
): Float64Array {
  const norm = (x: Float32Array, rows: number) =>
    Float64Array.from({ length: rows }, (_, r) => {
      let s = 0;
      for (let j = 0; j < d; j++) s += x[r * d + j] * x[r * d + j];
      return Math.sqrt(s);
    });
  const na = norm(a, m);
  const nb = norm(b, n);
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let k = 0; k < n; k++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += a[i * d + j] * b[k * d + j];
      const den = na[i] * nb[k];
      out[i * n + k] = den > 0 ? s / den : 0;
    }
  }
  return out;
}

/**
 * Global learned parents [n] (−1 = root) from a Tree SAE's per-layer parents in the data
 * contract layout (`parents[l][i]` ∈ [0, o_l], the value o_l meaning root).
 */
export function learnedParentsFromTree(tree: {
  offsets: readonly number[];
  parents: readonly Int32Array[];
}): Int32Array {
  const n = tree.offsets.length === 0 ? 0 : tree.offsets[tree.offsets.length - 1] +
    tree.parents[tree.parents.length - 1].length;
  const out = new Int32Array(n).fill(-1);
  tree.parents.forEach((ps, l) => {
    const o = tree.offsets[l];
    ps.forEach((p, i) => out[o + i] = p === o ? -1 : p);
  });
  return out;
}

/**
 * Streamed code statistics for ground-truth scoring: absorption events and, for flat
 * SAEs, the co-firing counts that give each matched child latent its coverage parent.
 * Feed code batches with the aligned true-activity rows via `add`, in any batch sizes.
 */
export class GroundTruthCodeStats {
  /** Tokens seen. */
  tokens = 0;
  /** (token, parent) events with the parent and ≥ 1 of its children truly active. */
  events = 0;
  /** Events where the parent's latent is silent and an active child's latent fires. */
  absorbed = 0;
  /** Per learned feature: tokens on which it fired [n]. */
  readonly fireCount: Float64Array;
  /** Per requested child latent: co-firing counts with every latent [n]. */
  readonly cofire: Map<number, Float64Array> = new Map();
  #childrenOf: Map<number, number[]>;
  #fires: Uint8Array;

  /**
   * `truthParents` [m] (−1 top-level), `match` [m] from `matchFeatures`, `n` learned
   * features, `width` W of the activity rows. `coverageFor` lists learned latents whose
   * co-firing counts to keep (the matched true children; empty for a Tree SAE).
   */
  constructor(
    readonly truthParents: Int32Array,
    readonly match: Int32Array,
    readonly n: number,
    readonly width: number,
    coverageFor: Iterable<number> = [],
  ) {
    this.fireCount = new Float64Array(n);
    this.#fires = new Uint8Array(n);
    this.#childrenOf = new Map();
    truthParents.forEach((p, c) => {
      if (p < 0) return;
      const list = this.#childrenOf.get(p);
      if (list) list.push(c);
      else this.#childrenOf.set(p, [c]);
    });
    for (const c of coverageFor) {
      if (c >= 0 && !this.cofire.has(c)) this.cofire.set(c, new Float64Array(n));
    }
  }

  /** Add one batch: codes [R, K] and the true activity of the same R tokens [R, W]. */
  add(codes: SparseCodes, active: Uint8Array): void {
    const { idx, val, rows, k } = codes;
    const W = this.width;
    if (active.length !== rows * W) {
      throw new RangeError(
        `ground truth: activity has ${active.length} bytes, expected rows × W = ${rows} × ${W}`,
      );
    }
    const fires = this.#fires;
    const firing: number[] = [];
    for (let r = 0; r < rows; r++) {
      firing.length = 0;
      for (let s = 0; s < k; s++) {
        const f = idx[r * k + s];
        if (f === UNUSED_SLOT || !(val[r * k + s] > FIRE_THRESHOLD)) continue;
        if (f >= this.n) {
          throw new RangeError(
            `ground truth: code index ${f} is not a feature of a ${this.n}-feature SAE`,
          );
        }
        if (!fires[f]) {
          fires[f] = 1;
          firing.push(f);
        }
      }
      for (const f of firing) {
        this.fireCount[f]++;
        const co = this.cofire.get(f);
        if (co) { for (const g of firing) if (g !== f) co[g]++; }
      }
      const on = (t: number) => (active[r * W + (t >> 3)] & (1 << (t & 7))) !== 0;
      for (const [p, children] of this.#childrenOf) {
        const lp = this.match[p];
        if (lp < 0 || !on(p)) continue;
        let anyChild = false;
        let childLatentFires = false;
        for (const c of children) {
          if (!on(c)) continue;
          anyChild = true;
          const lc = this.match[c];
          if (lc >= 0 && fires[lc]) childLatentFires = true;
        }
        if (!anyChild) continue;
        this.events++;
        if (!fires[lp] && childLatentFires) this.absorbed++;
      }
      for (const f of firing) fires[f] = 0;
    }
    this.tokens += rows;
  }

  /**
   * Coverage parent of a requested latent c: argmax over p ≠ c of co-fires(p, c)
   * (ties: fewer firings of p, then lower index); −1 when c never co-fires.
   */
  coverageParent(c: number): number {
    const co = this.cofire.get(c);
    if (!co) throw new RangeError(`ground truth: latent ${c} was not requested in coverageFor`);
    let best = -1;
    for (let p = 0; p < this.n; p++) {
      if (p === c || co[p] === 0) continue;
      if (
        best < 0 || co[p] > co[best] ||
        (co[p] === co[best] && this.fireCount[p] < this.fireCount[best])
      ) best = p;
    }
    return best;
  }

  /** Learned parents [n] for the requested latents (others −1), by activation coverage. */
  coverageParents(): Int32Array {
    const out = new Int32Array(this.n).fill(-1);
    for (const c of this.cofire.keys()) out[c] = this.coverageParent(c);
    return out;
  }
}

/** The learned latents matched to true children whose true parent is also matched. */
export function matchedChildLatents(truthParents: Int32Array, match: Int32Array): number[] {
  const out: number[] = [];
  truthParents.forEach((p, c) => {
    if (p >= 0 && match[c] >= 0 && match[p] >= 0) out.push(match[c]);
  });
  return out;
}

/** Parent accuracy: evaluated pairs and how many have the right learned parent. */
export function parentAccuracy(
  truthParents: Int32Array,
  match: Int32Array,
  learnedParents: Int32Array,
): { pairs: number; correct: number } {
  let pairs = 0;
  let correct = 0;
  truthParents.forEach((p, c) => {
    if (p < 0 || match[c] < 0 || match[p] < 0) return;
    pairs++;
    if (learnedParents[match[c]] === match[p]) correct++;
  });
  return { pairs, correct };
}

/** Inputs of `scoreGroundTruth`. */
export interface GroundTruthInput {
  /** Learned decoder rows [n, d] (contract layout `decW`). */
  decoder: Float32Array;
  d: number;
  /** True unit directions [m, d] and parents [m] (−1 top-level), from lib/synth/truth.ts. */
  truth: { directions: Float32Array; parents: Int32Array };
  /** Tree SAE: global learned parents [n], −1 = root (see `learnedParentsFromTree`). */
  learnedParents?: Int32Array;
  /** Codes of the dataset's tokens, in dataset order, and their true activity [T, W]. */
  codes?: SparseCodes;
  activity?: Uint8Array;
  /** Activity bytes per row W (required with `activity`). */
  activityWidth?: number;
}

/** Ground-truth scores of one SAE (fields null when the inputs they need were not given). */
export interface GroundTruthScores {
  /** Number of true features m. */
  trueFeatures: number;
  /** Mean matched cosine over true features (unmatched → 0). */
  meanCosine: number;
  /** Fraction of true features with matched cosine > 0.9. */
  recovered: number;
  /** Fraction of evaluable true children with the right learned parent; null if none or no parents. */
  parentAccuracy: number | null;
  /** Number of true child–parent pairs evaluated. */
  parentPairs: number;
  /** Where learned parents came from: the SAE's tree, activation coverage from codes, or none. */
  parentSource: "tree" | "coverage" | null;
  /** Ground-truth absorption rate; null without codes + activity or without events. */
  absorption: number | null;
  /** Number of absorption events (denominator). */
  absorptionEvents: number;
  /** The matching itself. */
  match: Int32Array;
  cosine: Float32Array;
}

/**
 * Score an SAE against the ground truth in one call (all tokens in memory; for streaming
 * use `matchFeatures` + `GroundTruthCodeStats` directly).
 */
export function scoreGroundTruth(input: GroundTruthInput): GroundTruthScores {
  const { decoder, d, truth } = input;
  const n = decoder.length / d;
  const m = truth.parents.length;
  const { match, cosine } = matchFeatures(decoder, truth.directions, d);
  let sumCos = 0;
  let rec = 0;
  for (let i = 0; i < m; i++) {
    sumCos += cosine[i];
    if (cosine[i] > RECOVERED_COSINE) rec++;
  }
  let stats: GroundTruthCodeStats | null = null;
  if (input.codes && input.activity) {
    if (input.activityWidth === undefined) {
      throw new RangeError("ground truth: activityWidth is required with activity");
    }
    const coverageFor = input.learnedParents ? [] : matchedChildLatents(truth.parents, match);
    stats = new GroundTruthCodeStats(truth.parents, match, n, input.activityWidth, coverageFor);
    stats.add(input.codes, input.activity);
  }
  let parents: Int32Array | null = null;
  let parentSource: GroundTruthScores["parentSource"] = null;
  if (input.learnedParents) {
    if (input.learnedParents.length !== n) {
      throw new RangeError(
        `ground truth: learnedParents has ${input.learnedParents.length} entries, expected n = ${n}`,
      );
    }
    parents = input.learnedParents;
    parentSource = "tree";
  } else if (stats) {
    parents = stats.coverageParents();
    parentSource = "coverage";
  }
  const pa = parents ? parentAccuracy(truth.parents, match, parents) : { pairs: 0, correct: 0 };
  return {
    trueFeatures: m,
    meanCosine: m > 0 ? sumCos / m : 0,
    recovered: m > 0 ? rec / m : 0,
    parentAccuracy: parents && pa.pairs > 0 ? pa.correct / pa.pairs : null,
    parentPairs: pa.pairs,
    parentSource,
    absorption: stats && stats.events > 0 ? stats.absorbed / stats.events : null,
    absorptionEvents: stats ? stats.events : 0,
    match,
    cosine,
  };
}

/**
 * Score an SAE against a synthetic dataset folder (reads truth.json and, with codes,
 * truth-active.bin). Returns null when the folder has no truth.json (not synthetic).
 * `codes`, when given, must cover the dataset's first `codes.rows` tokens in order.
 */
export async function scoreAgainstDataset(
  dir: string,
  input: Omit<GroundTruthInput, "truth" | "activity" | "activityWidth">,
): Promise<GroundTruthScores | null> {
  const truth = await readTruth(dir);
  if (!truth) return null;
  if (input.d !== truth.dIn) {
    throw new DataError(
      `${
        join(dir, TRUTH_FILE)
      }: d_in is ${truth.dIn} but the SAE's decoder has width ${input.d}; ` +
        `score the SAE on the dataset it was trained on`,
    );
  }
  const activity = input.codes
    ? await readTruthActivity(dir, truth, 0, input.codes.rows)
    : undefined;
  return scoreGroundTruth({
    ...input,
    truth,
    ...(activity ? { activity, activityWidth: truth.activityWidth } : {}),
  });
}
