/**
 * Sparse backward pass of `losses` (math contract "Backward"): only selected slots with
 * val > 0 and aux slots with auxVal > 0 carry gradient; the top-k choice, the tree gate
 * and the AuxK residual are constants. The reference writes dense gradient arrays but
 * visits only the (row, slot) entries — the GPU does the same sums per feature.
 * Legend: B = tokens, d = d_in, n = features, K = slots per row, L = levels.
 */
import { UNUSED_SLOT } from "./constants.ts";
import type { Codes } from "./select.ts";
import type { LossResult } from "./loss.ts";

/** Gradients of the total loss. */
export interface Grads {
  /** [n, d] d loss / d encW. */
  encW: Float32Array;
  /** [n, d] d loss / d decW (before removing the parallel component). */
  decW: Float32Array;
  /** [d] d loss / d bDec. */
  bDec: Float32Array;
}

/** Accumulate one slot's contribution: decoder grad val·g, encoder grad dpre·(xs − bDec), bDec −dpre·encW. */
function addSlot(
  acc: { encW: Float64Array; decW: Float64Array; bDec: Float64Array },
  f: number,
  v: number,
  g: Float64Array,
  centered: Float64Array,
  encW: Float32Array,
  decW: Float32Array,
  d: number,
) {
  let dval = 0;
  for (let j = 0; j < d; j++) {
    acc.decW[f * d + j] += v * g[j];
    dval += g[j] * decW[f * d + j];
  }
  if (!(v > 0)) return; // ReLU: an inactive slot passes no gradient to the encoder
  for (let j = 0; j < d; j++) {
    acc.encW[f * d + j] += dval * centered[j];
    acc.bDec[j] -= dval * encW[f * d + j];
  }
}

/**
 * Gradients of `loss.total` w.r.t. encW, decW, bDec. codes [B, K] are the main codes,
 * featureLayer [n] the level of each feature (a slot feeds every level ≥ its feature's).
 */
export function backward(
  xs: Float32Array,
  B: number,
  d: number,
  n: number,
  encW: Float32Array,
  decW: Float32Array,
  bDec: Float32Array,
  codes: Codes,
  featureLayer: Uint32Array,
  loss: LossResult,
): Grads {
  const L = loss.recon.length;
  const acc = {
    encW: new Float64Array(n * d),
    decW: new Float64Array(n * d),
    bDec: new Float64Array(d),
  };
  const suffix = Array.from({ length: L }, () => new Float64Array(d)); // Σ_{l' ≥ l} G_l'[b]
  const centered = new Float64Array(d);
  const K = codes.K;
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < d; j++) centered[j] = xs[b * d + j] - bDec[j];
    // --- main loss: G_l[b] = 2 (x̂s_{≤l} − xs) / totalVar, bDec gets Σ_l G_l directly ---
    for (let l = L - 1; l >= 0; l--) {
      for (let j = 0; j < d; j++) {
        const G = (2 * (loss.recon[l][b * d + j] - xs[b * d + j])) / loss.totalVar;
        suffix[l][j] = G + (l + 1 < L ? suffix[l + 1][j] : 0);
      }
    }
    for (let j = 0; j < d; j++) acc.bDec[j] += suffix[0][j];
    for (let s = 0; s < K; s++) {
      const f = codes.idx[b * K + s];
      const v = codes.val[b * K + s];
      if (f === UNUSED_SLOT || v === 0) continue;
      addSlot(acc, f, v, suffix[featureLayer[f]], centered, encW, decW, d);
    }
    // --- AuxK: gA = α · 2 (ê − r) / denom; no bias in ê, r constant ---
    const gA = new Float64Array(d);
    for (const term of loss.aux) {
      if (!(term.denom > 0) || term.group.alpha === 0) continue;
      const c = term.codes;
      for (let j = 0; j < d; j++) {
        gA[j] = (term.group.alpha * 2 * (term.recon[b * d + j] - term.residual[b * d + j])) /
          term.denom;
      }
      for (let s = 0; s < c.K; s++) {
        const f = c.idx[b * c.K + s];
        const v = c.val[b * c.K + s];
        if (f === UNUSED_SLOT || v === 0) continue;
        addSlot(acc, f, v, gA, centered, encW, decW, d);
      }
    }
  }
  return {
    encW: Float32Array.from(acc.encW),
    decW: Float32Array.from(acc.decW),
    bDec: Float32Array.from(acc.bDec),
  };
}
