/**
 * Sparse decode: x̂s[b] = bDec + Σ_slots val·decW[idx] — a gather of K decoder rows per
 * token; no dense [B, n] code matrix exists anywhere on this path.
 * Legend: B = tokens, d = d_in, K = slots per row, L = levels. decW [n, d] (row = feature).
 */
import { UNUSED_SLOT } from "./constants.ts";

/** Full reconstruction x̂s [B, d] from every slot of the codes. */
export function decode(
  idx: Uint32Array,
  val: Float32Array,
  B: number,
  K: number,
  decW: Float32Array,
  bDec: Float32Array,
  d: number,
): Float32Array {
  const out = new Float32Array(B * d);
  const acc = new Float64Array(d);
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < d; j++) acc[j] = bDec[j];
    for (let s = 0; s < K; s++) {
      const f = idx[b * K + s];
      const v = val[b * K + s];
      if (f === UNUSED_SLOT || v === 0) continue;
      for (let j = 0; j < d; j++) acc[j] += v * decW[f * d + j];
    }
    for (let j = 0; j < d; j++) out[b * d + j] = acc[j];
  }
  return out;
}

/**
 * Cumulative level reconstructions x̂s_{≤l} [B, d] for l = 0..L−1: level l sums bDec and
 * every slot whose feature lies in a layer ≤ l (featureLayer [n] from config
 * `featureLayers`). Tree: layers of the tree; Matryoshka: nested prefixes; TopK: L = 1.
 */
export function levelReconstructions(
  idx: Uint32Array,
  val: Float32Array,
  B: number,
  K: number,
  decW: Float32Array,
  bDec: Float32Array,
  d: number,
  featureLayer: Uint32Array,
  L: number,
): Float32Array[] {
  const out = Array.from({ length: L }, () => new Float32Array(B * d));
  const perLayer = Array.from({ length: L }, () => new Float64Array(d));
  for (let b = 0; b < B; b++) {
    for (const acc of perLayer) acc.fill(0);
    for (let s = 0; s < K; s++) {
      const f = idx[b * K + s];
      const v = val[b * K + s];
      if (f === UNUSED_SLOT || v === 0) continue;
      const acc = perLayer[featureLayer[f]];
      for (let j = 0; j < d; j++) acc[j] += v * decW[f * d + j];
    }
    for (let j = 0; j < d; j++) {
      let run = bDec[j];
      for (let l = 0; l < L; l++) {
        run += perLayer[l][j];
        out[l][b * d + j] = run;
      }
    }
  }
  return out;
}
