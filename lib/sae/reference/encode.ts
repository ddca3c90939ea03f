/**
 * Encoder pre-activations (no encoder bias, ref): pre[b,i] = Σ_j encW[i,j]·(xs[b,j] − bDec[j]).
 * Legend: B = tokens, d = d_in, n = features. xs [B, d], encW [n, d], bDec [d], pre [B, n].
 */

/** Dense pre-activations pre [B, n] (the reference of the encoder GEMM). */
export function encode(
  xs: Float32Array,
  encW: Float32Array,
  bDec: Float32Array,
  B: number,
  d: number,
  n: number,
): Float32Array {
  const pre = new Float32Array(B * n);
  const centered = new Float64Array(d);
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < d; j++) centered[j] = xs[b * d + j] - bDec[j];
    for (let i = 0; i < n; i++) {
      let s = 0;
      const w = i * d;
      for (let j = 0; j < d; j++) s += encW[w + j] * centered[j];
      pre[b * n + i] = s;
    }
  }
  return pre;
}
