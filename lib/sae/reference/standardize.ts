/**
 * Per-token standardisation (ref): xs = (x − mean_b) / (std_b + 1e-5), and its inverse.
 * Legend: B = tokens in the batch, d = d_in.
 */
import { STD_EPS } from "./constants.ts";

/** Standardised batch plus the per-token statistics needed to undo it. */
export interface Standardized {
  /** [B, d] standardised rows. */
  xs: Float32Array;
  /** [B] per-token mean over the d coordinates. */
  mean: Float32Array;
  /** [B] per-token population standard deviation (before adding STD_EPS). */
  std: Float32Array;
}

/** Standardise each row of x [B, d] to zero mean and unit std (population std + STD_EPS). */
export function standardize(x: Float32Array, B: number, d: number): Standardized {
  const xs = new Float32Array(B * d);
  const mean = new Float32Array(B);
  const std = new Float32Array(B);
  for (let b = 0; b < B; b++) {
    const row = b * d;
    let s = 0;
    for (let j = 0; j < d; j++) s += x[row + j];
    const mu = s / d;
    let q = 0;
    for (let j = 0; j < d; j++) q += (x[row + j] - mu) ** 2;
    const sd = Math.sqrt(q / d);
    mean[b] = mu;
    std[b] = sd;
    const scale = sd + STD_EPS;
    for (let j = 0; j < d; j++) xs[row + j] = (x[row + j] - mu) / scale;
  }
  return { xs, mean, std };
}

/** Undo `standardize`: x = xs·(std_b + STD_EPS) + mean_b for xs [B, d] (new array). */
export function unstandardize(
  xs: Float32Array,
  mean: Float32Array,
  std: Float32Array,
  B: number,
  d: number,
): Float32Array {
  const out = new Float32Array(B * d);
  for (let b = 0; b < B; b++) {
    const scale = std[b] + STD_EPS;
    for (let j = 0; j < d; j++) out[b * d + j] = xs[b * d + j] * scale + mean[b];
  }
  return out;
}
