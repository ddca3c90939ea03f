/**
 * An SAE read from another library's layout (SAELens, EleutherAI sparsify, or our own
 * SAELens export), held with everything its inference formula needs — including what our
 * native model has no slot for: an encoder bias `b_enc` and a different input normalisation.
 *
 * Inference formula (one token x [d]; Legend: d = d_in, n = features):
 *   (xs, undo) = normalize(x)                        per `normalize` below
 *   pre        = encW · (xs − applyBDec·bDec) + bEnc  encW [n, d] (row i = feature i)
 *   codes      = select(pre)                          per `config.arch` (topk / tree / batchtopk θ)
 *   x̂s         = Σ_slots val·decW[idx] + bDec         decW [n, d]
 *   x̂          = undo(x̂s)
 *
 * An MP-SAE (arch "mp") replaces pre/select by matching pursuit over decW (lib/sae/mp).
 *
 * `normalize`:
 *   "none":       xs = x, undo = identity (sparsify; SAELens normalize_activations "none").
 *   "arbor":      μ = mean x, σ = sqrt(mean (x−μ)²) (population), xs = (x−μ)/(σ+1e-5),
 *                 undo: x̂ = x̂s·(σ+1e-5) + μ  (Arbor's per-token standardisation).
 *   "layer_norm": SAELens' run-time layer norm: σ_u = sqrt(Σ (x−μ)²/(d−1)) (sample std),
 *                 xs = (x−μ)/(σ_u+1e-5), undo: x̂ = x̂s·σ_u + μ (no eps on the way out).
 */
import { DataError } from "../errors.ts";
import { MP_RESIDUAL_EPS, mpPursuit } from "../sae/mp/reference.ts";
import type { SaeConfig } from "../sae/config.ts";
import { numFeatures, slotsPerRow } from "../sae/config.ts";
import {
  type Codes,
  decode,
  encode,
  selectThreshold,
  selectTopK,
  selectTree,
  standardize,
  STD_EPS,
  unstandardize,
} from "../sae/reference/ops.ts";

/** Input normalisations the formula knows (see the module comment). */
export type Normalization = "none" | "arbor" | "layer_norm";

/** An SAE from another layout, ready for inference. */
export interface ForeignSae {
  /** Where it was read from (named in errors and provenance). */
  source: string;
  /** Which layout it was read from. */
  format: "saelens" | "sparsify";
  /** Model shape and selection rule (arch topk | batchtopk | matryoshka | tree). */
  config: SaeConfig;
  /** [n, d] encoder rows. */
  encW: Float32Array;
  /** [n] encoder bias (zeros when the layout has none). */
  bEnc: Float32Array;
  /** [n, d] decoder rows. */
  decW: Float32Array;
  /** [d] decoder bias. */
  bDec: Float32Array;
  /** Whether bDec is subtracted from the input before encoding (SAELens apply_b_dec_to_input). */
  applyBDec: boolean;
  /** Input normalisation. */
  normalize: Normalization;
  /** tree: parents per layer (values in [0, o_l], o_l = root); others: []. */
  parents: Int32Array[];
  /** batchtopk: inference threshold θ (−1: not set, TopK with k slots is used). */
  threshold: number;
  /** Free-form provenance (hook name, model) from the source config. */
  info: Record<string, string>;
}

/** Per-token normalisation of x [B, d] and the statistics to undo it. */
export interface Normalized {
  /** [B, d] normalised rows. */
  xs: Float32Array;
  /** Undo the normalisation of a reconstruction [B, d] (new array). */
  undo(xhat: Float32Array): Float32Array;
}

/** Apply `mode` to x [B, d]. */
export function normalizeInput(
  mode: Normalization,
  x: Float32Array,
  B: number,
  d: number,
): Normalized {
  if (mode === "none") return { xs: x.slice(), undo: (xh) => xh.slice() };
  if (mode === "arbor") {
    const { xs, mean, std } = standardize(x, B, d);
    return { xs, undo: (xh) => unstandardize(xh, mean, std, B, d) };
  }
  const xs = new Float32Array(B * d);
  const mean = new Float64Array(B);
  const std = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[b * d + j];
    const mu = s / d;
    let q = 0;
    for (let j = 0; j < d; j++) q += (x[b * d + j] - mu) ** 2;
    const sd = Math.sqrt(q / Math.max(1, d - 1)); // torch.std: Bessel-corrected
    mean[b] = mu;
    std[b] = sd;
    for (let j = 0; j < d; j++) xs[b * d + j] = (x[b * d + j] - mu) / (sd + STD_EPS);
  }
  return {
    xs,
    undo: (xh) => {
      const out = new Float32Array(B * d);
      for (let b = 0; b < B; b++) {
        for (let j = 0; j < d; j++) out[b * d + j] = xh[b * d + j] * std[b] + mean[b];
      }
      return out;
    },
  };
}

/** Pre-activations pre [B, n] = encW·(xs − applyBDec·bDec) + bEnc. */
export function foreignPre(sae: ForeignSae, xs: Float32Array, B: number): Float32Array {
  const d = sae.config.dIn;
  const n = numFeatures(sae.config);
  const shift = sae.applyBDec ? sae.bDec : new Float32Array(d);
  const pre = encode(xs, sae.encW, shift, B, d, n);
  for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) pre[b * n + i] += sae.bEnc[i];
  return pre;
}

/** Codes of a batch of pre-activations, by the SAE's selection rule. */
export function foreignSelect(sae: ForeignSae, pre: Float32Array, B: number): Codes {
  const c = sae.config;
  const n = numFeatures(c);
  if (c.arch === "tree") return selectTree(pre, B, n, c.layers, c.kPerLayer, sae.parents);
  if (c.arch === "batchtopk" && sae.threshold >= 0) {
    return selectThreshold(pre, B, n, slotsPerRow(c), sae.threshold);
  }
  return selectTopK(pre, B, n, c.k);
}

/** Whether a config is the Matching-Pursuit SAE (compares as a string until SaeArch has "mp"). */
export function isMp(c: { arch: string }): boolean {
  return c.arch === "mp";
}

/**
 * Codes of normalised inputs xs [B, d]: the selection rule on the pre-activations, or for an
 * MP-SAE the matching pursuit over the decoder rows (tied weights; eps = MP_RESIDUAL_EPS).
 */
export function foreignCodes(sae: ForeignSae, xs: Float32Array, B: number): Codes {
  const c = sae.config;
  if (isMp(c)) return mpPursuit(xs, sae.decW, B, c.dIn, numFeatures(c), c.k, MP_RESIDUAL_EPS);
  return foreignSelect(sae, foreignPre(sae, xs, B), B);
}

/** Codes of raw activations x [B, d]. */
export function foreignEncode(sae: ForeignSae, x: Float32Array, B: number): Codes {
  const { xs } = normalizeInput(sae.normalize, x, B, sae.config.dIn);
  return foreignCodes(sae, xs, B);
}

/** Reconstruction x̂ [B, d] of raw activations x [B, d] (normalisation undone). */
export function foreignReconstruct(sae: ForeignSae, x: Float32Array, B: number): Float32Array {
  const d = sae.config.dIn;
  const norm = normalizeInput(sae.normalize, x, B, d);
  const codes = foreignCodes(sae, norm.xs, B);
  return norm.undo(decode(codes.idx, codes.val, B, codes.K, sae.decW, sae.bDec, d));
}

/**
 * Why `sae` cannot be stored as a native Arbor checkpoint without changing its outputs
 * (empty when it can): Arbor models standardise per token ("arbor"), subtract b_dec before
 * encoding and have no encoder bias.
 */
export function nativeBlockers(sae: ForeignSae): string[] {
  const out: string[] = [];
  if (sae.normalize !== "arbor") {
    out.push(
      `its input normalisation is "${sae.normalize}", Arbor checkpoints always use Arbor's ` +
        "per-token standardisation",
    );
  }
  if (!sae.applyBDec) out.push("it does not subtract b_dec before encoding");
  const nz = sae.bEnc.findIndex((v) => v !== 0);
  if (nz >= 0) {
    out.push(`it has an encoder bias (b_enc[${nz}] = ${sae.bEnc[nz]}); Arbor models have none`);
  }
  return out;
}

/** Throw a DataError naming `what` when a tensor shape is not `want`. */
export function expectShape(path: string, what: string, got: number[], want: number[]) {
  if (got.length !== want.length || got.some((g, i) => g !== want[i])) {
    throw new DataError(`${path}: tensor "${what}" has shape [${got}], expected [${want}]`);
  }
}

/** Transpose a row-major [rows, cols] matrix. */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}
