/**
 * Seeded sampling of synthetic activations from a feature tree.
 *
 * Shapes: d = d_in, m = true features, R = rows in a batch, W = activity bytes per row
 * = ceil(m / 8).
 * Per token (row), walking the tree top-down:
 * - the root fires with its `active_prob`; a node whose parent is silent is silent;
 * - independent children: child i fires with its `active_prob` (Bernoulli);
 *   mutually exclusive children: one uniform u picks child i when u falls in
 *   [Σ_{j<i} p_j, Σ_{j≤i} p_j), none when u ≥ Σ p;
 * - a firing read-out feature gets magnitude 1 (binary) or |μ + σ·z|, z ~ N(0,1)
 *   (μ = `magnitude_mean`, σ = `magnitude_std` or the generator's `magnitudeStd`);
 * - x = Σ_f mag_f · v_f + noise · z_d, z_d ~ N(0, I_d) (noise = per-coordinate std);
 * - unless `keepEmpty`, a row on which no read-out feature fired is redrawn, so every
 *   feature's rate is its tree rate divided by 1 − P(empty) (`expectedRates`).
 * Two independent streams: directions from `seed`, samples from `seed ^ SAMPLE_STREAM`,
 * so changing the token count never changes the directions.
 */
import { Rng } from "../util/rng.ts";
import { DataError } from "../errors.ts";
import { buildDirections, type MixingParams } from "./directions.ts";
import { emptyProbability, type FeatureNode, type FeatureTree } from "./tree.ts";

/** Redrawing empty rows needs some chance of a non-empty one. */
const MAX_EMPTY_PROBABILITY = 0.999;

/** Salt that separates the sampling stream from the direction stream. */
const SAMPLE_STREAM = 0x9e3779b9;

/** Everything besides the tree that defines a synthetic dataset. */
export interface SynthParams extends MixingParams {
  /** Width of the activation vectors. */
  dIn: number;
  /** Number of rows (tokens) to generate. */
  tokens: number;
  /** Per-coordinate standard deviation of the additive Gaussian noise. */
  noise: number;
  /** Magnitude std of non-binary features that do not set `magnitude_std`. */
  magnitudeStd: number;
  /** Seed of both random streams. */
  seed: number;
  /**
   * Keep rows on which no read-out feature fires (pure noise). Default false: such rows
   * are redrawn, because per-token standardisation (SAE contract) scales a noise-only row
   * up to the norm of a real one, which puts a floor of P(empty) under every SAE's FVU.
   */
  keepEmpty?: boolean;
}

/** One generated batch. */
export interface SynthBatch {
  /** Index of the batch's first row in the dataset. */
  start: number;
  /** Number of rows R. */
  rows: number;
  /** Activations [R, d]. */
  x: Float32Array;
  /** True activity bitset [R, W]: bit f%8 of byte f>>3 of row r = feature f fired. */
  active: Uint8Array;
}

/** Bytes per row of the per-token activity bitset. */
export function activityBytes(features: number): number {
  return Math.ceil(features / 8);
}

/** Whether feature f fired on row r of an activity bitset with W bytes per row. */
export function isActive(active: Uint8Array, width: number, r: number, f: number): boolean {
  return (active[r * width + (f >> 3)] & (1 << (f & 7))) !== 0;
}

/** Check generator parameters; throws naming the bad field and its valid range. */
export function validateSynthParams(p: SynthParams): void {
  const bad = (field: string, want: string, got: number) => {
    throw new DataError(`synth: ${field} must be ${want}, got ${got}`);
  };
  if (!Number.isInteger(p.dIn) || p.dIn < 4) bad("d_in", "an integer >= 4", p.dIn);
  if (!Number.isInteger(p.tokens) || p.tokens < 1) bad("tokens", "an integer >= 1", p.tokens);
  if (!(p.noise >= 0) || !Number.isFinite(p.noise)) bad("noise", "a finite number >= 0", p.noise);
  if (!(p.magnitudeStd >= 0) || !Number.isFinite(p.magnitudeStd)) {
    bad("magnitude_std", "a finite number >= 0", p.magnitudeStd);
  }
  if (!(p.epsilon >= 0 && p.epsilon < 1)) bad("epsilon", "in [0, 1)", p.epsilon);
  if (!(p.siblingEpsilon >= 0 && p.siblingEpsilon < 1)) {
    bad("sibling_epsilon", "in [0, 1)", p.siblingEpsilon);
  }
  if (!Number.isInteger(p.seed)) bad("seed", "an integer", p.seed);
}

/** Flat tree tables for the per-token walk (avoids object chasing in the hot loop). */
interface FlatTree {
  prob: Float64Array;
  feature: Int32Array;
  exclusive: Uint8Array;
  magMean: Float64Array;
  /** Magnitude std, or −1 for binary nodes. */
  magStd: Float64Array;
  childStart: Int32Array;
  childCount: Int32Array;
  /** Child node ids, grouped per parent. */
  childList: Int32Array;
}

function flatten(tree: FeatureTree, defaultStd: number): FlatTree {
  const n = tree.nodes.length;
  const index = new Map<FeatureNode, number>(tree.nodes.map((node, i) => [node, i]));
  const flat: FlatTree = {
    prob: new Float64Array(n),
    feature: new Int32Array(n),
    exclusive: new Uint8Array(n),
    magMean: new Float64Array(n),
    magStd: new Float64Array(n),
    childStart: new Int32Array(n),
    childCount: new Int32Array(n),
    childList: new Int32Array(Math.max(0, n - 1)),
  };
  let cursor = 0;
  tree.nodes.forEach((node, i) => {
    flat.prob[i] = node.activeProb;
    flat.feature[i] = node.feature;
    flat.exclusive[i] = node.exclusiveChildren ? 1 : 0;
    flat.magMean[i] = node.magnitudeMean;
    flat.magStd[i] = node.isBinary ? -1 : node.magnitudeStd ?? defaultStd;
    flat.childStart[i] = cursor;
    flat.childCount[i] = node.children.length;
    for (const c of node.children) flat.childList[cursor++] = index.get(c)!;
  });
  return flat;
}

/** A seeded sampler: directions are drawn on construction, rows on each `batch` call. */
export class SynthGenerator {
  /** True directions [m, d]. */
  readonly directions: Float32Array;
  /** Number of true features m. */
  readonly features: number;
  /** Activity bytes per row W. */
  readonly width: number;
  /** Rows generated so far. */
  produced = 0;
  /** P(a draw has no read-out feature firing) under the tree. */
  readonly emptyProbability: number;
  /** Per feature: rows on which it fired so far. */
  readonly fireCounts: Float64Array;
  #rng: Rng;
  #flat: FlatTree;
  #mags: Float64Array;

  /** Validate the parameters and draw the directions. */
  constructor(readonly tree: FeatureTree, readonly params: SynthParams) {
    validateSynthParams(params);
    this.emptyProbability = emptyProbability(tree);
    if (!params.keepEmpty && this.emptyProbability > MAX_EMPTY_PROBABILITY) {
      throw new DataError(
        `synth: no feature fires on ${
          (this.emptyProbability * 100).toFixed(2)
        }% of draws, too many to ` +
          `redraw; raise the tree's active_prob values or keep empty rows (keepEmpty / --keep-empty)`,
      );
    }
    this.features = tree.features.length;
    this.width = activityBytes(this.features);
    this.directions = buildDirections(tree, params.dIn, params, params.seed);
    this.fireCounts = new Float64Array(this.features);
    this.#rng = new Rng((params.seed ^ SAMPLE_STREAM) >>> 0);
    this.#flat = flatten(tree, params.magnitudeStd);
    this.#mags = new Float64Array(this.features);
  }

  /** Generate the next `rows` rows (fewer at the end of the dataset; 0 when done). */
  batch(rows: number): SynthBatch {
    const R = Math.max(0, Math.min(rows, this.params.tokens - this.produced));
    const d = this.params.dIn;
    const W = this.width;
    const x = new Float32Array(R * d);
    const active = new Uint8Array(R * W);
    const rng = this.#rng;
    const flat = this.#flat;
    const mags = this.#mags;
    const noise = this.params.noise;
    const stack: number[] = [];
    const firing: number[] = [];
    for (let r = 0; r < R; r++) {
      firing.length = 0;
      while (firing.length === 0) {
        if (rng.next() < flat.prob[0]) stack.push(0);
        this.#walk(stack, firing);
        if (this.params.keepEmpty) break;
      }
      const xr = x.subarray(r * d, (r + 1) * d);
      if (noise > 0) { for (let j = 0; j < d; j++) xr[j] = noise * rng.normal(); }
      for (const f of firing) {
        const m = mags[f];
        const v = this.directions.subarray(f * d, (f + 1) * d);
        for (let j = 0; j < d; j++) xr[j] += m * v[j];
        active[r * W + (f >> 3)] |= 1 << (f & 7);
        this.fireCounts[f]++;
      }
    }
    const out: SynthBatch = { start: this.produced, rows: R, x, active };
    this.produced += R;
    return out;
  }

  /** Walk the tree from the nodes on `stack`, pushing firing features (magnitudes into #mags). */
  #walk(stack: number[], firing: number[]): void {
    const rng = this.#rng;
    const flat = this.#flat;
    const mags = this.#mags;
    while (stack.length) {
      const node = stack.pop()!;
      const f = flat.feature[node];
      if (f >= 0) {
        const sd = flat.magStd[node];
        mags[f] = sd < 0 ? 1 : Math.abs(flat.magMean[node] + sd * rng.normal());
        firing.push(f);
      }
      const start = flat.childStart[node];
      const count = flat.childCount[node];
      if (flat.exclusive[node]) {
        const u = rng.next();
        let acc = 0;
        for (let i = 0; i < count; i++) {
          const c = flat.childList[start + i];
          acc += flat.prob[c];
          if (u < acc) {
            stack.push(c);
            break;
          }
        }
      } else {
        for (let i = count - 1; i >= 0; i--) {
          const c = flat.childList[start + i];
          if (rng.next() < flat.prob[c]) stack.push(c);
        }
      }
    }
  }

  /** Iterate over the whole dataset in batches of `rows` rows. */
  *batches(rows: number): Generator<SynthBatch> {
    while (this.produced < this.params.tokens) yield this.batch(rows);
  }

  /** Per feature: the expected fraction of rows on which it fires (tree rate, over 1 − P(empty) when redrawing). */
  expectedRates(): Float64Array {
    const scale = this.params.keepEmpty ? 1 : 1 / (1 - this.emptyProbability);
    return this.tree.nominalRates.map((p) => p * scale);
  }

  /** Per feature: fraction of the rows generated so far on which it fired. */
  empiricalRates(): Float64Array {
    const n = Math.max(1, this.produced);
    return this.fireCounts.map((c) => c / n);
  }
}
