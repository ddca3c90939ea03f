/**
 * k-sparse probing on SAE latents for the first-letter task (Gurnee et al. 2023 as used by
 * SAEBench's absorption eval), on the host: SAE codes are sparse, so both fits cost
 * O(nonzeros), not O(rows × n).
 *
 * 1. Latent ranking: P one-vs-rest logistic probes on the codes with an L1 penalty
 *    (`fitL1Probes`; SAEBench `train_sparse_multi_probe`: class-balanced BCE, Adam, lr 0.01
 *    decayed to 1e-5, L2 1e-6, L1 0.01, 50 epochs, batch 4096). A letter's top-k latents
 *    are its k largest weights (signed: only latents that predict the letter).
 * 2. k-sparse probe: a logistic regression on those k latents (`fitSparseLogReg`, what
 *    sklearn's LogisticRegression(class_weight="balanced") minimises: ½‖w‖² + C·Σ s_i ℓ_i
 *    with C = 1, balanced sample weights, unpenalised bias), solved by Newton's method.
 * 3. F1 of the probe (logit > 0) on held-out words (`f1Score`).
 *
 * Deviations: the L1 probes' loss is each probe's own mean (the reference averages over
 * probes too; with Adam that only rescales the decays), and rows are shuffled once (seeded).
 */
import { Rng } from "../util/rng.ts";

/** Sparse codes of N rows: K slots per row (idx 0xFFFFFFFF = unused). */
export interface CodeRows {
  idx: Uint32Array;
  val: Float32Array;
  rows: number;
  k: number;
}

/** An unused slot. */
const UNUSED = 0xFFFFFFFF;

/** Settings of the L1 ranking probes. */
export interface L1ProbeOptions {
  epochs: number;
  batchSize: number;
  lr: number;
  lrEnd: number;
  weightDecay: number;
  /** L1 coefficient on the weights (SAEBench k_sparse_probe_l1_decay). */
  l1: number;
  seed: number;
}

/** SAEBench's k-sparse probe settings (AbsorptionEvalConfig / train_sparse_multi_probe). */
export const DEFAULT_L1_PROBE: L1ProbeOptions = {
  epochs: 50,
  batchSize: 4096,
  lr: 0.01,
  lrEnd: 1e-5,
  weightDecay: 1e-6,
  l1: 0.01,
  seed: 0,
};

const BETA1 = 0.9, BETA2 = 0.999, ADAM_EPS = 1e-8;

/**
 * P one-vs-rest L1 logistic probes on codes: labels[r] = class of row r (0..P−1), n latents.
 * Returns weights [P, n] and biases [P].
 */
export function fitL1Probes(
  codes: CodeRows,
  labels: ArrayLike<number>,
  n: number,
  P: number,
  options: Partial<L1ProbeOptions> = {},
): { weights: Float32Array; bias: Float32Array } {
  const o = { ...DEFAULT_L1_PROBE, ...options };
  const N = codes.rows, K = codes.k;
  const pos = new Float64Array(P);
  for (let r = 0; r < N; r++) pos[labels[r]]++;
  const posW = Float64Array.from(pos, (p) => (p > 0 && p < N ? (N - p) / p : 1));
  const order = Uint32Array.from({ length: N }, (_, i) => i);
  const rng = new Rng(o.seed);
  for (let i = N - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const stride = n + 1; // weights then bias, per probe
  const theta = new Float64Array(P * stride);
  const m = new Float64Array(P * stride);
  const v = new Float64Array(P * stride);
  const grad = new Float64Array(P * stride);
  const z = new Float64Array(P);
  let t = 0;
  for (let e = 0; e < o.epochs; e++) {
    const lr = o.lr * Math.pow(o.lrEnd / o.lr, e / o.epochs);
    for (let r0 = 0; r0 < N; r0 += o.batchSize) {
      const bs = Math.min(o.batchSize, N - r0);
      grad.fill(0);
      for (let b = 0; b < bs; b++) {
        const r = order[r0 + b];
        for (let j = 0; j < P; j++) z[j] = theta[j * stride + n];
        for (let s = 0; s < K; s++) {
          const f = codes.idx[r * K + s];
          if (f === UNUSED) continue;
          const a = codes.val[r * K + s];
          for (let j = 0; j < P; j++) z[j] += theta[j * stride + f] * a;
        }
        for (let j = 0; j < P; j++) {
          const sig = 1 / (1 + Math.exp(-Math.min(60, Math.max(-60, z[j]))));
          const dz = (labels[r] === j ? posW[j] * (sig - 1) : sig) / bs;
          grad[j * stride + n] += dz;
          for (let s = 0; s < K; s++) {
            const f = codes.idx[r * K + s];
            if (f !== UNUSED) grad[j * stride + f] += dz * codes.val[r * K + s];
          }
        }
      }
      t++;
      const bc1 = 1 - BETA1 ** t, bc2 = 1 - BETA2 ** t;
      for (let q = 0; q < theta.length; q++) {
        const isBias = q % stride === n;
        const w = theta[q];
        const g = grad[q] + o.weightDecay * w + (isBias ? 0 : o.l1 * Math.sign(w));
        m[q] = BETA1 * m[q] + (1 - BETA1) * g;
        v[q] = BETA2 * v[q] + (1 - BETA2) * g * g;
        theta[q] = w - lr * (m[q] / bc1) / (Math.sqrt(v[q] / bc2) + ADAM_EPS);
      }
    }
  }
  const weights = new Float32Array(P * n);
  const bias = new Float32Array(P);
  for (let j = 0; j < P; j++) {
    weights.set(theta.subarray(j * stride, j * stride + n), j * n);
    bias[j] = theta[j * stride + n];
  }
  return { weights, bias };
}

/** Indices of the k largest values of row [0, n) (ties → lower index), largest first. */
export function topKIndices(row: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: row.length }, (_, i) => i);
  idx.sort((a, b) => row[b] - row[a] || a - b);
  return idx.slice(0, Math.min(k, row.length));
}

/** A fitted k-sparse probe: logit = Σ_i w_i·a[features_i] + bias. */
export interface SparseProbe {
  features: number[];
  weights: number[];
  bias: number;
}

/** Dense [N, k] values of `features` from the codes (0 where a latent did not fire). */
export function gatherFeatures(codes: CodeRows, features: number[]): Float64Array {
  const col = new Map(features.map((f, i) => [f, i]));
  const k = features.length;
  const out = new Float64Array(codes.rows * k);
  for (let r = 0; r < codes.rows; r++) {
    for (let s = 0; s < codes.k; s++) {
      const c = col.get(codes.idx[r * codes.k + s]);
      if (c !== undefined) out[r * k + c] = codes.val[r * codes.k + s];
    }
  }
  return out;
}

/** Solve A x = b in place-free Gaussian elimination with partial pivoting (A [m, m]). */
function solve(A: Float64Array, b: Float64Array, m: number): Float64Array {
  const a = Float64Array.from(A), x = Float64Array.from(b);
  for (let c = 0; c < m; c++) {
    let p = c;
    for (let r = c + 1; r < m; r++) if (Math.abs(a[r * m + c]) > Math.abs(a[p * m + c])) p = r;
    if (p !== c) {
      for (let j = 0; j < m; j++) [a[c * m + j], a[p * m + j]] = [a[p * m + j], a[c * m + j]];
      [x[c], x[p]] = [x[p], x[c]];
    }
    const piv = a[c * m + c] || 1e-12;
    for (let r = c + 1; r < m; r++) {
      const f = a[r * m + c] / piv;
      if (f === 0) continue;
      for (let j = c; j < m; j++) a[r * m + j] -= f * a[c * m + j];
      x[r] -= f * x[c];
    }
  }
  for (let c = m - 1; c >= 0; c--) {
    let s = x[c];
    for (let j = c + 1; j < m; j++) s -= a[c * m + j] * x[j];
    x[c] = s / (a[c * m + c] || 1e-12);
  }
  return x;
}

/** Numerically safe log(1 + e^z). */
function softplus(z: number): number {
  return z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
}

/**
 * Balanced L2 logistic regression on x [N, k] with labels y (0/1): minimises
 * ½‖w‖² + C·Σ_i s_i·ℓ_i, s_i = N / (2·#class(y_i)), bias unpenalised (sklearn's lbfgs
 * objective), by damped Newton steps. Rows whose k values are all zero are pooled.
 */
export function fitSparseLogReg(
  x: Float64Array,
  y: ArrayLike<number>,
  N: number,
  k: number,
  options: { C?: number; maxIter?: number } = {},
): { weights: number[]; bias: number } {
  const C = options.C ?? 1;
  const maxIter = options.maxIter ?? 100;
  let nPos = 0;
  for (let r = 0; r < N; r++) nPos += y[r] > 0.5 ? 1 : 0;
  const nNeg = N - nPos;
  const sw = (yi: number) => (yi > 0.5 ? N / (2 * Math.max(1, nPos)) : N / (2 * Math.max(1, nNeg)));
  // Rows with a nonzero value keep their own term; zero rows pool into two weighted terms.
  const live: number[] = [];
  let zeroPos = 0, zeroNeg = 0;
  for (let r = 0; r < N; r++) {
    let any = false;
    for (let i = 0; i < k; i++) if (x[r * k + i] !== 0) any = true;
    if (any) live.push(r);
    else if (y[r] > 0.5) zeroPos += sw(1);
    else zeroNeg += sw(0);
  }
  const m = k + 1;
  const theta = new Float64Array(m);
  const objective = (th: Float64Array): number => {
    let f = 0;
    for (let i = 0; i < k; i++) f += 0.5 * th[i] * th[i];
    const b = th[k];
    let loss = zeroPos * softplus(-b) + zeroNeg * softplus(b);
    for (const r of live) {
      let z = b;
      for (let i = 0; i < k; i++) z += th[i] * x[r * k + i];
      loss += sw(y[r]) * (y[r] > 0.5 ? softplus(-z) : softplus(z));
    }
    return f + C * loss;
  };
  let fCur = objective(theta);
  for (let it = 0; it < maxIter; it++) {
    const g = new Float64Array(m), H = new Float64Array(m * m);
    for (let i = 0; i < k; i++) {
      g[i] = theta[i];
      H[i * m + i] = 1;
    }
    const addRow = (xr: (i: number) => number, yi: number, weight: number) => {
      let z = theta[k];
      for (let i = 0; i < k; i++) z += theta[i] * xr(i);
      const s = 1 / (1 + Math.exp(-z));
      const gz = C * weight * (s - yi), hz = C * weight * s * (1 - s);
      for (let i = 0; i < m; i++) {
        const xi = i === k ? 1 : xr(i);
        if (xi === 0) continue;
        g[i] += gz * xi;
        for (let j = 0; j < m; j++) {
          const xj = j === k ? 1 : xr(j);
          H[i * m + j] += hz * xi * xj;
        }
      }
    };
    const zero = () => 0;
    if (zeroPos > 0) addRow(zero, 1, zeroPos);
    if (zeroNeg > 0) addRow(zero, 0, zeroNeg);
    for (const r of live) addRow((i) => x[r * k + i], y[r] > 0.5 ? 1 : 0, sw(y[r]));
    for (let i = 0; i < m; i++) H[i * m + i] += 1e-10;
    const step = solve(H, g, m);
    let t = 1, next = theta, fNext = fCur;
    for (let ls = 0; ls < 40; ls++) {
      next = theta.map((v, i) => v - t * step[i]);
      fNext = objective(next);
      if (fNext <= fCur) break;
      t /= 2;
    }
    const moved = Math.max(...next.map((v, i) => Math.abs(v - theta[i])));
    if (!(fNext <= fCur)) break;
    theta.set(next);
    const done = fCur - fNext <= 1e-12 * Math.max(1, Math.abs(fCur)) || moved < 1e-10;
    fCur = fNext;
    if (done) break;
  }
  return { weights: Array.from(theta.subarray(0, k)), bias: theta[k] };
}

/** F1 of predictions against the truth (positive class); 0 when there is no true positive. */
export function f1Score(pred: ArrayLike<boolean>, truth: ArrayLike<boolean>): number {
  let tp = 0, fp = 0, fn = 0;
  for (let i = 0; i < pred.length; i++) {
    if (pred[i] && truth[i]) tp++;
    else if (pred[i]) fp++;
    else if (truth[i]) fn++;
  }
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}
