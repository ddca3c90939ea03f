/**
 * Feature composition (paper §5.1, App. D.1, after Bussmann et al. 2025): the mean over
 * features of the largest cosine similarity between a feature's decoder row and any other
 * decoder row. Higher means several features encode the same information.
 *
 * decW [n, d] rows are normalised first (a zero row has cosine 0 with everything). The
 * n×n Gram matrix is never held: columns are processed in blocks of `block` features
 * (GPU `project` entry of kernels/logreg.wgsl when a GPU is given, plain TS otherwise),
 * and only each feature's running maximum is kept.
 */
import type { Gpu } from "../gpu/device.ts";
import { projectRows } from "./logreg.ts";
import { unitRows } from "./probes.ts";

/** Features per block of the Gram computation (bounds the [n, block] chunk held on the host). */
export const COMPOSITION_BLOCK = 256;

/** Composition result. */
export interface CompositionResult {
  /** Mean over features of the max cosine to any other feature. */
  meanMaxCosine: number;
  /** Each feature's max cosine to any other feature [n]. */
  maxCosine: Float32Array;
}

/** Mean max decoder cosine (App. D.1), blockwise. */
export async function composition(
  gpu: Gpu | null,
  decW: Float32Array,
  n: number,
  d: number,
  block = COMPOSITION_BLOCK,
): Promise<CompositionResult> {
  if (decW.length !== n * d) {
    throw new RangeError(`composition: decW has ${decW.length} values, expected ${n}×${d}`);
  }
  const unit = unitRows(decW, n, d);
  const best = new Float32Array(n).fill(-Infinity);
  for (let c0 = 0; c0 < n; c0 += block) {
    const P = Math.min(block, n - c0);
    const cols = unit.subarray(c0 * d, (c0 + P) * d);
    const sims = await projectRows(gpu, unit, cols, n, P, d); // [n, P]
    for (let r = 0; r < n; r++) {
      for (let j = 0; j < P; j++) {
        if (r === c0 + j) continue;
        const s = sims[r * P + j];
        if (s > best[r]) best[r] = s;
      }
    }
  }
  if (n === 1) best[0] = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += best[i];
  return { meanMaxCosine: n ? sum / n : 0, maxCosine: best };
}
