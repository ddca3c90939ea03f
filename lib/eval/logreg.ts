/**
 * Class-balanced logistic-regression probes, many at once (the linear probes of paper §3
 * and §5.2, after Chanin et al. 2024 as used by the reference): GPU version on
 * kernels/logreg.wgsl and its plain TS twin `fitLogRegReference`.
 *
 * Shapes: N samples, d inputs, P probes. x [N, d], labels [N, P] in {0, 1} (row-major).
 * Loss of probe j on a mini-batch: mean_b [ w_j·y·softplus(−z) + (1−y)·softplus(z) ],
 * z = θ_j·x + bias_j, with the class balance w_j = #negatives / #positives over all N
 * (ref: BCEWithLogits pos_weight). Each probe's loss is its own mean over the batch
 * (the reference averages over probes too; with Adam that only rescales the weight
 * decay), so fitting P probes together equals fitting each alone.
 * Optimiser (ref): Adam, lr 0.01 decayed exponentially to 1e-5 over the epochs (once per
 * epoch), weight decay 1e-6 as an L2 term, β = (0.9, 0.999), eps 1e-8. Parameters start
 * at zero (the problem is convex; the reference starts from torch's random init).
 * Rows are shuffled once with the seed (the reference reshuffles every epoch) and
 * visited in contiguous mini-batches.
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, readF32, uniforms, uploadStorage } from "../gpu/buffer.ts";
import {
  type Dispatch,
  encodeDispatches,
  getPipeline,
  type Kernel,
  withErrorScope,
} from "../gpu/kernel.ts";
import { GpuError } from "../errors.ts";
import { Rng } from "../util/rng.ts";

/** Invocations per workgroup of every logreg entry. */
const WG = 64;
const kernel = (entry: string): Kernel => ({ file: "logreg.wgsl", entry, constants: { WG } });

/** Adam β1 (torch default, used by the reference). */
const BETA1 = 0.9;
/** Adam β2 (torch default). */
const BETA2 = 0.999;
/** Adam eps (torch default). */
const ADAM_EPS = 1e-8;

/** Training settings of the probes. */
export interface LogRegOptions {
  /** Passes over the data (ref hierarchy eval: 50). */
  epochs: number;
  /** Rows per gradient step (ref: 4096). */
  batchSize: number;
  /** Initial learning rate (ref: 0.01). */
  lr: number;
  /** Learning rate reached at the last epoch (ref: 1e-5). */
  lrEnd: number;
  /** L2 weight decay added to the gradient (ref: 1e-6). */
  weightDecay: number;
  /** Seed of the row shuffle. */
  seed: number;
}

/** The reference's probe settings (tree-sae hierarchy eval). */
export const DEFAULT_LOGREG: LogRegOptions = {
  epochs: 50,
  batchSize: 4096,
  lr: 0.01,
  lrEnd: 1e-5,
  weightDecay: 1e-6,
  seed: 0,
};

/** Fitted probes. */
export interface LogRegFit {
  /** Weights [P, d]. */
  weights: Float32Array;
  /** Biases [P]. */
  bias: Float32Array;
  /** Class-balance weight of each probe's positives [P] (#neg / #pos; 1 if no positive). */
  posWeight: Float32Array;
}

function checkShapes(x: Float32Array, labels: Float32Array, N: number, d: number, P: number) {
  if (x.length !== N * d) {
    throw new RangeError(`logreg: x has ${x.length} values, expected ${N}×${d}`);
  }
  if (labels.length !== N * P) {
    throw new RangeError(`logreg: labels have ${labels.length} values, expected ${N}×${P}`);
  }
}

/** #negatives / #positives per probe (1 when a probe has no positive or no negative). */
export function positiveWeights(labels: Float32Array, N: number, P: number): Float32Array {
  const pos = new Float64Array(P);
  for (let b = 0; b < N; b++) for (let j = 0; j < P; j++) pos[j] += labels[b * P + j] > 0.5 ? 1 : 0;
  return Float32Array.from(pos, (p) => (p > 0 && p < N ? (N - p) / p : 1));
}

/** Seeded permutation of the rows (Fisher–Yates) applied to x and labels. */
export function shuffleRows(
  x: Float32Array,
  labels: Float32Array,
  N: number,
  d: number,
  P: number,
  seed: number,
): { x: Float32Array; labels: Float32Array } {
  const order = Uint32Array.from({ length: N }, (_, i) => i);
  const rng = new Rng(seed);
  for (let i = N - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const xs = new Float32Array(N * d);
  const ys = new Float32Array(N * P);
  order.forEach((src, dst) => {
    xs.set(x.subarray(src * d, src * d + d), dst * d);
    ys.set(labels.subarray(src * P, src * P + P), dst * P);
  });
  return { x: xs, labels: ys };
}

/** Learning rate of epoch e: exponential decay from lr to lrEnd over the epochs. */
function epochLr(o: LogRegOptions, e: number): number {
  return o.lr * Math.pow(o.lrEnd / o.lr, e / o.epochs);
}

function split(fit: Float32Array, d: number, P: number, posWeight: Float32Array): LogRegFit {
  const weights = new Float32Array(P * d);
  const bias = new Float32Array(P);
  for (let j = 0; j < P; j++) {
    weights.set(fit.subarray(j * (d + 1), j * (d + 1) + d), j * d);
    bias[j] = fit[j * (d + 1) + d];
  }
  return { weights, bias, posWeight };
}

/** Plain TS twin of the GPU fit (same shuffle, batches, f32 arithmetic where it matters). */
export function fitLogRegReference(
  x: Float32Array,
  labels: Float32Array,
  N: number,
  d: number,
  P: number,
  options: Partial<LogRegOptions> = {},
): LogRegFit {
  const o = { ...DEFAULT_LOGREG, ...options };
  checkShapes(x, labels, N, d, P);
  const posW = positiveWeights(labels, N, P);
  const data = shuffleRows(x, labels, N, d, P, o.seed);
  const d1 = d + 1;
  const theta = new Float32Array(P * d1);
  const m = new Float32Array(P * d1);
  const v = new Float32Array(P * d1);
  const grad = new Float32Array(P * d1);
  let t = 0;
  for (let e = 0; e < o.epochs; e++) {
    const lr = epochLr(o, e);
    for (let r0 = 0; r0 < N; r0 += o.batchSize) {
      const bs = Math.min(o.batchSize, N - r0);
      grad.fill(0);
      for (let b = 0; b < bs; b++) {
        const xo = (r0 + b) * d;
        for (let j = 0; j < P; j++) {
          const wo = j * d1;
          let z = theta[wo + d];
          for (let i = 0; i < d; i++) z += theta[wo + i] * data.x[xo + i];
          const s = 1 / (1 + Math.exp(-Math.min(60, Math.max(-60, z))));
          const y = data.labels[(r0 + b) * P + j];
          const dz = (y > 0.5 ? posW[j] * (s - 1) : s) / bs;
          for (let i = 0; i < d; i++) grad[wo + i] += dz * data.x[xo + i];
          grad[wo + d] += dz;
        }
      }
      t++;
      const bc1 = 1 - BETA1 ** t, bc2 = 1 - BETA2 ** t;
      for (let q = 0; q < theta.length; q++) {
        const g = grad[q] + o.weightDecay * theta[q];
        m[q] = BETA1 * m[q] + (1 - BETA1) * g;
        v[q] = BETA2 * v[q] + (1 - BETA2) * g * g;
        theta[q] -= lr * (m[q] / bc1) / (Math.sqrt(v[q] / bc2) + ADAM_EPS);
      }
    }
  }
  return split(theta, d, P, posW);
}

function grid(gpu: Gpu, count: number): { groups: [number, number]; rowGroups: number } {
  const total = Math.max(1, Math.ceil(count / WG));
  const maxX = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(total, maxX);
  return { groups: [x, Math.ceil(total / x)], rowGroups: x };
}

const STEP_FIELDS = [
  "d",
  "p",
  "r0",
  "bs",
  "count",
  "rowGroups",
  "rows",
  "_pad",
  "lr",
  "wd",
  "bc1",
  "bc2",
  "beta1",
  "beta2",
  "eps",
  "_pad2",
] as const;
const STEP_FLOATS = ["lr", "wd", "bc1", "bc2", "beta1", "beta2", "eps", "_pad2"];

function stepParams(gpu: Gpu, values: Partial<Record<(typeof STEP_FIELDS)[number], number>>) {
  const fields: Record<string, number> = {};
  for (const f of STEP_FIELDS) fields[f] = values[f] ?? 0;
  return uniforms(gpu, fields, STEP_FLOATS);
}

function checkBinding(gpu: Gpu, bytes: number, what: string) {
  const limit = gpu.device.limits.maxStorageBufferBindingSize;
  if (bytes > limit) {
    throw new GpuError(
      `logreg: ${what} needs ${bytes} bytes, over this device's ${limit}-byte binding limit; ` +
        "use fewer probe tokens (--probe-tokens) or fewer probes per fit",
    );
  }
}

/** Fit P probes on the GPU; same algorithm and result (to f32 rounding) as fitLogRegReference. */
export async function fitLogRegGpu(
  gpu: Gpu,
  x: Float32Array,
  labels: Float32Array,
  N: number,
  d: number,
  P: number,
  options: Partial<LogRegOptions> = {},
): Promise<LogRegFit> {
  const o = { ...DEFAULT_LOGREG, ...options };
  checkShapes(x, labels, N, d, P);
  checkBinding(gpu, x.byteLength, `x [${N}, ${d}]`);
  checkBinding(gpu, labels.byteLength, `labels [${N}, ${P}]`);
  const posW = positiveWeights(labels, N, P);
  const data = shuffleRows(x, labels, N, d, P, o.seed);
  const count = P * (d + 1);
  const xBuf = uploadStorage(gpu, data.x, "logreg x");
  const yBuf = uploadStorage(gpu, data.labels, "logreg y");
  const posBuf = uploadStorage(gpu, posW, "logreg posW");
  const theta = createStorage(gpu, count * 4, "logreg theta");
  const m = createStorage(gpu, count * 4, "logreg m");
  const v = createStorage(gpu, count * 4, "logreg v");
  const grad = createStorage(gpu, count * 4, "logreg grad");
  const dz = createStorage(gpu, Math.min(o.batchSize, N) * P * 4, "logreg dz");
  const entries = ["dlogits", "grad", "adam"].map(kernel);
  const pipelines = await Promise.all(entries.map((k) => getPipeline(gpu, k)));
  try {
    let t = 0;
    for (let e = 0; e < o.epochs; e++) {
      const lr = epochLr(o, e);
      const encoder = gpu.device.createCommandEncoder({ label: "logreg epoch" });
      const temp: GPUBuffer[] = [];
      for (let r0 = 0; r0 < N; r0 += o.batchSize) {
        const bs = Math.min(o.batchSize, N - r0);
        t++;
        const gl = grid(gpu, bs * P), gg = grid(gpu, count);
        const base = { d, p: P, r0, bs, count, lr, wd: o.weightDecay, beta1: BETA1, beta2: BETA2 };
        const extra = { bc1: 1 - BETA1 ** t, bc2: 1 - BETA2 ** t, eps: ADAM_EPS };
        const uL = stepParams(gpu, { ...base, ...extra, rowGroups: gl.rowGroups });
        const uG = stepParams(gpu, { ...base, ...extra, rowGroups: gg.rowGroups });
        temp.push(uL, uG);
        const dispatches: Dispatch[] = [
          {
            kernel: entries[0],
            buffers: [xBuf, yBuf, theta, posBuf, dz, uL],
            workgroups: gl.groups,
          },
          { kernel: entries[1], buffers: [xBuf, dz, grad, uG], workgroups: gg.groups },
          { kernel: entries[2], buffers: [theta, grad, m, v, uG], workgroups: gg.groups },
        ];
        await withErrorScope(
          gpu,
          "logreg step",
          () => encodeDispatches(gpu, encoder, dispatches, pipelines),
        );
      }
      gpu.device.queue.submit([encoder.finish()]);
      await gpu.device.queue.onSubmittedWorkDone();
      for (const b of temp) b.destroy();
    }
    return split(await readF32(gpu, theta, count), d, P, posW);
  } finally {
    for (const b of [xBuf, yBuf, posBuf, theta, m, v, grad, dz]) b.destroy();
  }
}

/** Plain TS twin of the `project` entry: out[r, j] = a_r · b_j (a [R, d], b [P, d]). */
export function projectReference(
  a: Float32Array,
  b: Float32Array,
  R: number,
  P: number,
  d: number,
): Float32Array {
  const out = new Float32Array(R * P);
  for (let r = 0; r < R; r++) {
    for (let j = 0; j < P; j++) {
      let acc = 0;
      for (let i = 0; i < d; i++) acc += a[r * d + i] * b[j * d + i];
      out[r * P + j] = acc;
    }
  }
  return out;
}

/**
 * out[r, j] = a_r · b_j on the GPU (a [R, d] e.g. decoder rows, b [P, d] e.g. unit probe
 * directions), processed in row chunks that fit the binding limit; TS twin when gpu is null.
 */
export async function projectRows(
  gpu: Gpu | null,
  a: Float32Array,
  b: Float32Array,
  R: number,
  P: number,
  d: number,
): Promise<Float32Array> {
  if (!gpu) return projectReference(a, b, R, P, d);
  checkBinding(gpu, b.byteLength, `b [${P}, ${d}]`);
  const limit = gpu.device.limits.maxStorageBufferBindingSize;
  const chunk = Math.max(1, Math.min(Math.floor(limit / (4 * d)), Math.floor(limit / (4 * P))));
  const out = new Float32Array(R * P);
  const bBuf = uploadStorage(gpu, b, "project b");
  const k = kernel("project");
  const pipeline = await getPipeline(gpu, k);
  try {
    for (let r0 = 0; r0 < R; r0 += chunk) {
      const rows = Math.min(chunk, R - r0);
      const aBuf = uploadStorage(gpu, a.subarray(r0 * d, (r0 + rows) * d), "project a");
      const oBuf = createStorage(gpu, rows * P * 4, "project out");
      const g = grid(gpu, rows * P);
      const u = stepParams(gpu, { d, p: P, rows, rowGroups: g.rowGroups });
      const encoder = gpu.device.createCommandEncoder({ label: "project" });
      await withErrorScope(
        gpu,
        "logreg project",
        () =>
          encodeDispatches(gpu, encoder, [{
            kernel: k,
            buffers: [aBuf, bBuf, oBuf, u],
            workgroups: g.groups,
          }], [
            pipeline,
          ]),
      );
      gpu.device.queue.submit([encoder.finish()]);
      out.set(await readF32(gpu, oBuf, rows * P), r0 * P);
      for (const buf of [aBuf, oBuf, u]) buf.destroy();
    }
  } finally {
    bBuf.destroy();
  }
  return out;
}
