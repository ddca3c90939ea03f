/**
 * Optimiser step pieces, applied in this order each step (math contract): remove the
 * decoder-parallel gradient component, Adam on every parameter, renormalise decoder rows.
 * Legend: n = features, d = d_in. All functions update their first argument in place.
 */
import { ADAM_BETA1, ADAM_BETA2, ADAM_EPS } from "./constants.ts";

/** In place: g_f ← g_f − (g_f·decW_f) decW_f for every decoder row f (gDecW, decW [n, d]). */
export function removeParallelGrad(gDecW: Float32Array, decW: Float32Array, n: number, d: number) {
  for (let f = 0; f < n; f++) {
    let dot = 0;
    for (let j = 0; j < d; j++) dot += gDecW[f * d + j] * decW[f * d + j];
    for (let j = 0; j < d; j++) gDecW[f * d + j] -= dot * decW[f * d + j];
  }
}

/**
 * In place: one bias-corrected Adam update of `param` with gradient `grad` and moments
 * m, v (all the same length); t is the 1-based step count.
 * m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²; p −= lr · (m/(1−β1^t)) / (√(v/(1−β2^t)) + ε).
 */
export function adamStep(
  param: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  t: number,
  lr: number,
) {
  const c1 = 1 - ADAM_BETA1 ** t;
  const c2 = 1 - ADAM_BETA2 ** t;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i];
    m[i] = ADAM_BETA1 * m[i] + (1 - ADAM_BETA1) * g;
    v[i] = ADAM_BETA2 * v[i] + (1 - ADAM_BETA2) * g * g;
    param[i] -= (lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + ADAM_EPS);
  }
}

/** In place: scale every row of w [n, d] to unit L2 norm (an all-zero row stays zero). */
export function renormRows(w: Float32Array, n: number, d: number) {
  for (let f = 0; f < n; f++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += w[f * d + j] ** 2;
    const norm = Math.sqrt(s);
    if (norm === 0) continue;
    for (let j = 0; j < d; j++) w[f * d + j] /= norm;
  }
}
