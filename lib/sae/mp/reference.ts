/**
 * Matching-Pursuit SAE (Costa et al. 2025, "From flat to hierarchical: extracting sparse
 * representations with matching pursuit"), the plain TypeScript reference and the twin of
 * kernels/mp.wgsl. Tied weights: the atoms are the unit-norm decoder rows decW [n, d]; no
 * decoder bias (the paper's setup; ref `use_pre_encoder_bias = False`).
 *
 * Forward, per token (xs = the standardised input, r_0 = xs), for t = 0..k−1 while not done:
 *   c = decW · r_t; i_t = argmax c (ties → lower index); stop if c[i_t] ≤ MP_MIN_CORRELATION·‖r_t‖;
 *   a_t = c[i_t]; r_{t+1} = r_t − a_t·decW[i_t];
 *   done when ‖r_{t+1}‖ < eps (MP_RESIDUAL_EPS) or i_t was already picked (then a_t is added to
 *   its coefficient: the ref's "support stopped changing" rule).
 *   x̂s = Σ_t a_t·decW[i_t] = xs − r_T. The number of distinct atoms is the adaptive L0.
 * Loss = Σ_b ‖r_T[b]‖² / totalVar (the FVU; no AuxK, as in the ref).
 *
 * Backward ("gradients through every iteration"; the selection i_t is a constant): with
 * g_T = 2 r_T / totalVar and going back t = T−1..0, d = decW[i_t], r_t = r_{t+1} + a_t·d:
 *   since r_{t+1} = r_t − (d·r_t)·d,
 *   s_t = d·g_{t+1};  ∂L/∂d += −(s_t·r_t + a_t·g_{t+1});  g_t = g_{t+1} − s_t·d.
 * (∂/∂d of (d·r)d is d rᵀ + (d·r) I, whose transpose applied to g gives r(d·g) + (d·r)g.)
 *
 * Codes: K = k slots per row in pick order (not sorted by value), val = summed coefficient.
 * Legend: B = tokens, d = d_in, n = atoms, K = k = max pursuit steps.
 */
import { UNUSED_SLOT } from "../reference/constants.ts";

/** Pursuit stops when the residual norm falls below this (ref `eps` default; Costa et al.). */
export const MP_RESIDUAL_EPS = 5e-3;

/**
 * A pick needs c > MP_MIN_CORRELATION·‖r‖, not just c > 0: right after an update the picked atom's
 * correlation is exactly 0 in exact arithmetic, and its f32 value (~1e-8·‖r‖, sign by rounding) would
 * otherwise decide whether the row re-picks it or stops, differently on different GPUs. f32 error of
 * a unit-atom dot product is ~6e-8·√d·‖r‖ (1.7e-6·‖r‖ at d = 768), well under this.
 */
export const MP_MIN_CORRELATION = 1e-5;

/** State of a batch's pursuit: codes, the pick sequence and the residual. */
export interface MpState {
  /** [B, K] atom per code slot (pick order), UNUSED_SLOT where empty. */
  idx: Uint32Array;
  /** [B, K] summed coefficient per slot (0 where empty). */
  val: Float32Array;
  /** Slots per row (= k). */
  K: number;
  /** [B, K] atom of pick t (UNUSED_SLOT after the last pick). */
  pickIdx: Uint32Array;
  /** [B, K] coefficient a_t of pick t. */
  pickVal: Float32Array;
  /** [B, 4] per row: slots used, done flag, picks made, bits of the f32 ‖r‖² (= rnorm2). */
  info: Uint32Array;
  /** [B, d] residual r. */
  residual: Float32Array;
  /** [B] ‖r‖² after the row's last update (‖xs‖² before any). */
  rnorm2: Float32Array;
}

/** The pursuit's start: r = xs, every slot and pick empty, no row done. */
export function mpInit(xs: Float32Array, B: number, d: number, K: number): MpState {
  const rnorm2 = new Float32Array(B);
  const info = new Uint32Array(B * 4);
  for (let b = 0; b < B; b++) {
    let q = 0;
    for (let j = 0; j < d; j++) q += xs[b * d + j] ** 2;
    rnorm2[b] = q;
    info[b * 4 + 3] = f32Bits(rnorm2[b]);
  }
  return {
    idx: new Uint32Array(B * K).fill(UNUSED_SLOT),
    val: new Float32Array(B * K),
    K,
    pickIdx: new Uint32Array(B * K).fill(UNUSED_SLOT),
    pickVal: new Float32Array(B * K),
    info,
    residual: xs.slice(),
    rnorm2,
  };
}

/** One pursuit iteration on every row that is not done (twin of kernels/mp.wgsl mp_step). */
export function mpIteration(
  s: MpState,
  decW: Float32Array,
  B: number,
  d: number,
  n: number,
  eps: number,
) {
  const K = s.K;
  const r = s.residual;
  const f = Math.fround;
  for (let b = 0; b < B; b++) {
    if (s.info[b * 4 + 1]) continue;
    let best = -Infinity;
    let atom = UNUSED_SLOT;
    for (let i = 0; i < n; i++) {
      let c = 0;
      for (let j = 0; j < d; j++) c = f(c + f(decW[i * d + j] * r[b * d + j]));
      if (c > best) {
        best = c;
        atom = i;
      }
    }
    if (!(best > 0 && best * best > MP_MIN_CORRELATION ** 2 * s.rnorm2[b])) {
      s.info[b * 4 + 1] = 1;
      continue;
    }
    const t = s.info[b * 4 + 2];
    s.pickIdx[b * K + t] = atom;
    s.pickVal[b * K + t] = best;
    s.info[b * 4 + 2] = t + 1;
    const used = s.info[b * 4];
    let repick = false;
    for (let slot = 0; slot < used; slot++) {
      if (s.idx[b * K + slot] === atom) {
        s.val[b * K + slot] += best;
        repick = true;
      }
    }
    if (!repick) {
      s.idx[b * K + used] = atom;
      s.val[b * K + used] = best;
      s.info[b * 4] = used + 1;
    }
    let q = 0;
    for (let j = 0; j < d; j++) {
      const v = f(r[b * d + j] - f(best * decW[atom * d + j]));
      r[b * d + j] = v;
      q += v * v;
    }
    s.rnorm2[b] = q;
    s.info[b * 4 + 3] = f32Bits(q);
    if (q < eps * eps || repick) s.info[b * 4 + 1] = 1;
  }
}

/** The bits of `v` rounded to f32 (how the kernel stores ‖r‖² in info). */
export function f32Bits(v: number): number {
  return new Uint32Array(Float32Array.of(v).buffer)[0];
}

/** The whole pursuit: up to k iterations from xs [B, d]. */
export function mpPursuit(
  xs: Float32Array,
  decW: Float32Array,
  B: number,
  d: number,
  n: number,
  k: number,
  eps = MP_RESIDUAL_EPS,
): MpState {
  const s = mpInit(xs, B, d, k);
  for (let t = 0; t < k; t++) mpIteration(s, decW, B, d, n, eps);
  return s;
}

/**
 * The final residual r_T [B, d] for a fixed pick sequence (a_t recomputed as decW[i_t]·r_t):
 * the function whose derivative `mpBackward` computes (used by gradient checks).
 */
export function mpResidualFixed(
  xs: Float32Array,
  decW: ArrayLike<number>,
  pickIdx: Uint32Array,
  info: Uint32Array,
  B: number,
  d: number,
  K: number,
): Float64Array {
  const r = Float64Array.from(xs);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < info[b * 4 + 2]; t++) {
      const w = pickIdx[b * K + t] * d;
      let a = 0;
      for (let j = 0; j < d; j++) a += decW[w + j] * r[b * d + j];
      for (let j = 0; j < d; j++) r[b * d + j] -= a * decW[w + j];
    }
  }
  return r;
}

/** Loss Σ‖r_T‖² / totalVar of a batch. */
export function mpLoss(residual: ArrayLike<number>, totalVar: number): number {
  let q = 0;
  for (let i = 0; i < residual.length; i++) q += residual[i] ** 2;
  return q / totalVar;
}

/** Gradient of the loss w.r.t. decW [n, d] through every pursuit iteration (selection fixed). */
export function mpBackward(
  s: MpState,
  decW: Float32Array,
  B: number,
  d: number,
  n: number,
  totalVar: number,
): Float32Array {
  const K = s.K;
  const grad = new Float64Array(n * d);
  const g = new Float64Array(d);
  const r = new Float64Array(d);
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < d; j++) {
      r[j] = s.residual[b * d + j];
      g[j] = (2 * r[j]) / totalVar;
    }
    for (let t = s.info[b * 4 + 2] - 1; t >= 0; t--) {
      const w = s.pickIdx[b * K + t] * d;
      const a = s.pickVal[b * K + t];
      let dot = 0;
      for (let j = 0; j < d; j++) {
        r[j] += a * decW[w + j]; // r_t from r_{t+1}
        dot += decW[w + j] * g[j];
      }
      for (let j = 0; j < d; j++) {
        grad[w + j] -= dot * r[j] + a * g[j];
        g[j] -= dot * decW[w + j];
      }
    }
  }
  return Float32Array.from(grad);
}
