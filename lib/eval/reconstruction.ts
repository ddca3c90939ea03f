/**
 * Reconstruction quality and sparsity (paper §5.3, App. D.2), streamed over batches.
 *
 * Shapes: B tokens per batch, d = d_in, n features. Inputs per batch: x [B, d] the raw
 * activations, xHat [B, d] the SAE reconstruction in the same (raw) space, and the
 * codes of the batch (see sparse_codes.ts). All sums are f64.
 *
 * Formulas (T = all tokens seen, x̄ = mean activation vector over T, m_t = mean_j x_tj):
 * - mse              = Σ_t Σ_j (x_tj − x̂_tj)² / (T·d)            (per element)
 * - msePerToken      = Σ_t Σ_j (x_tj − x̂_tj)² / T                (ref's "mse": sum over d, mean over tokens)
 * - varianceExplained (pooled R²) = 1 − Σ_t ‖x_t − x̂_t‖² / Σ_t ‖x_t − x̄‖²
 * - varianceExplainedTokenCentred (the paper's, App. D.2 "variance explained of each token";
 *   our reading of the reference: the total sum of squares is taken around each token's
 *   own mean over its d coordinates) = 1 − Σ_t ‖x_t − x̂_t‖² / Σ_t ‖x_t − m_t·1‖².
 *   The reference averages this ratio per batch; we pool over all tokens, which is the
 *   same when batches are equal in size and the ratio of sums otherwise.
 * - cosine           = mean_t cos(x_t, x̂_t)   (a zero vector counts as cosine 0)
 * - l2Ratio          = mean_t ‖x̂_t‖ / ‖x_t‖  (tokens with ‖x_t‖ = 0 skipped)
 * - l0               = mean_t #(slots with val > FIRE_THRESHOLD); l0PerLayer by the layer of
 *   the feature index (tree layers, matryoshka prefixes; one layer for topk/batchtopk)
 * - deadFraction     = fraction of features with density ≤ deadDensity (default 0: never fired
 *   on the evaluated tokens); denseFraction = fraction with density > denseDensity.
 */
import { FeatureStats, FIRE_THRESHOLD, type SparseCodes, UNUSED_SLOT } from "./sparse_codes.ts";

/** A feature firing on more than this fraction of tokens counts as dense (SAEBench's "dense" cut-off is 0.1 too). */
export const DENSE_DENSITY = 0.1;
/** A feature firing on at most this fraction of evaluated tokens counts as dead (never fired). */
export const DEAD_DENSITY = 0;

/** Thresholds of the reconstruction metrics. */
export interface ReconstructionOptions {
  /** Features per layer (tree), per matryoshka group, or [n] for a flat SAE. Sums to n. */
  layerSizes: number[];
  /** Density above which a feature is dense (default DENSE_DENSITY). */
  denseDensity?: number;
  /** Density at or below which a feature is dead (default DEAD_DENSITY). */
  deadDensity?: number;
}

/** The reconstruction metrics of one SAE over the evaluated tokens. */
export interface ReconstructionMetrics {
  tokens: number;
  mse: number;
  msePerToken: number;
  varianceExplained: number;
  varianceExplainedTokenCentred: number;
  cosine: number;
  l2Ratio: number;
  l0: number;
  l0PerLayer: number[];
  deadFraction: number;
  deadFractionPerLayer: number[];
  denseFraction: number;
  denseDensity: number;
  deadDensity: number;
  /** Firing density of every feature [n]. */
  densities: number[];
}

/** Accumulates reconstruction metrics batch by batch; `result()` at the end. */
export class ReconstructionAccumulator {
  readonly stats: FeatureStats;
  #sse = 0;
  #ssTokenCentred = 0;
  #cosSum = 0;
  #ratioSum = 0;
  #ratioTokens = 0;
  #sumX: Float64Array;
  #sumX2: Float64Array;
  #l0Layer: Float64Array;
  #layerOf: Uint32Array;
  readonly options: Required<ReconstructionOptions>;

  /** `d` input width, `n` features. */
  constructor(readonly d: number, readonly n: number, options: ReconstructionOptions) {
    const total = options.layerSizes.reduce((a, b) => a + b, 0);
    if (total !== n) {
      throw new RangeError(`layerSizes sum to ${total}, but the SAE has ${n} features`);
    }
    this.options = {
      layerSizes: options.layerSizes,
      denseDensity: options.denseDensity ?? DENSE_DENSITY,
      deadDensity: options.deadDensity ?? DEAD_DENSITY,
    };
    this.stats = new FeatureStats(n);
    this.#sumX = new Float64Array(d);
    this.#sumX2 = new Float64Array(d);
    this.#l0Layer = new Float64Array(options.layerSizes.length);
    this.#layerOf = new Uint32Array(n);
    let f = 0;
    options.layerSizes.forEach((s, l) => {
      for (let i = 0; i < s; i++) this.#layerOf[f++] = l;
    });
  }

  /** Add one batch: x and xHat [B, d] raw-space, codes of the same B rows. */
  add(x: Float32Array, xHat: Float32Array, codes: SparseCodes): void {
    const { d } = this;
    const B = codes.rows;
    if (x.length !== B * d || xHat.length !== B * d) {
      throw new RangeError(
        `reconstruction: x/xHat have ${x.length}/${xHat.length} values, expected ${B}×${d}`,
      );
    }
    for (let b = 0; b < B; b++) {
      let err = 0, xx = 0, hh = 0, xh = 0, mean = 0;
      const o = b * d;
      for (let j = 0; j < d; j++) mean += x[o + j];
      mean /= d;
      let centred = 0;
      for (let j = 0; j < d; j++) {
        const xv = x[o + j], hv = xHat[o + j];
        err += (xv - hv) ** 2;
        xx += xv * xv;
        hh += hv * hv;
        xh += xv * hv;
        centred += (xv - mean) ** 2;
        this.#sumX[j] += xv;
        this.#sumX2[j] += xv * xv;
      }
      this.#sse += err;
      this.#ssTokenCentred += centred;
      const denom = Math.sqrt(xx * hh);
      this.#cosSum += denom > 0 ? xh / denom : 0;
      if (xx > 0) {
        this.#ratioSum += Math.sqrt(hh / xx);
        this.#ratioTokens++;
      }
    }
    const { idx, val } = codes;
    for (let s = 0; s < idx.length; s++) {
      if (idx[s] !== UNUSED_SLOT && val[s] > FIRE_THRESHOLD) this.#l0Layer[this.#layerOf[idx[s]]]++;
    }
    this.stats.add(codes);
  }

  /** The metrics over everything added so far. */
  result(): ReconstructionMetrics {
    const T = this.stats.tokens;
    let ssPooled = 0;
    for (let j = 0; j < this.d; j++) ssPooled += this.#sumX2[j] - this.#sumX[j] ** 2 / T;
    const densities = Array.from(this.stats.density());
    const { denseDensity, deadDensity, layerSizes } = this.options;
    const deadPerLayer: number[] = [];
    let f = 0;
    for (const s of layerSizes) {
      let dead = 0;
      for (let i = 0; i < s; i++, f++) if (densities[f] <= deadDensity) dead++;
      deadPerLayer.push(s > 0 ? dead / s : 0);
    }
    const dead = densities.filter((p) => p <= deadDensity).length;
    const dense = densities.filter((p) => p > denseDensity).length;
    const l0PerLayer = Array.from(this.#l0Layer, (c) => c / T);
    return {
      tokens: T,
      mse: this.#sse / (T * this.d),
      msePerToken: this.#sse / T,
      varianceExplained: 1 - this.#sse / ssPooled,
      varianceExplainedTokenCentred: 1 - this.#sse / this.#ssTokenCentred,
      cosine: this.#cosSum / T,
      l2Ratio: this.#ratioTokens ? this.#ratioSum / this.#ratioTokens : 0,
      l0: l0PerLayer.reduce((a, b) => a + b, 0),
      l0PerLayer,
      deadFraction: dead / this.n,
      deadFractionPerLayer: deadPerLayer,
      denseFraction: dense / this.n,
      denseDensity,
      deadDensity,
      densities,
    };
  }
}
