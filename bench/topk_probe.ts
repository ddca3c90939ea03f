/**
 * The main top-k (kernels/topk.wgsl select_topk) alone at the shape (n = 24 576, k = 32),
 * as the step runs it on software adapters: from the encoder GEMM's chunk maxima (CMAX_IN), pre
 * read through its texture mirror (as when AuxK runs). The chunk maxima are made on the host.
 *
 *   deno run -A bench/topk_probe.ts [rows=1024]
 *
 * Prints the wall time of four runs (the first includes warm-up).
 */
import { getGpu } from "../lib/gpu/device.ts";
import { createStorage, uploadStorage } from "../lib/gpu/buffer.ts";
import { encodeDispatches, getPipeline } from "../lib/gpu/kernel.ts";
import { timeGpu } from "../lib/gpu/timer.ts";
import {
  createLayerTable,
  createPreTexture,
  encodePreTextureCopy,
  selectTopKOp,
} from "../lib/sae/ops/topk.ts";
const gpu = await getGpu();
const rows = Number(Deno.args[0] ?? 1024);
/** Features and active slots of the benchmark shape; features per chunk maximum. */
const n = 24576, k = 32, chunk = 64;
const pre = new Float32Array(rows * n);
let s = 1;
for (let i = 0; i < pre.length; i++) {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  pre[i] = (s / 2 ** 32 - 0.5) * 2 + Math.sin(i);
}
const nc = n / chunk;
const cmax = new Float32Array(rows * nc).fill(-Infinity);
for (let r = 0; r < rows; r++) {
  for (let i = 0; i < n; i++) {
    const c = r * nc + Math.floor(i / chunk);
    cmax[c] = Math.max(cmax[c], pre[r * n + i]);
  }
}
const preBuf = uploadStorage(gpu, pre, "pre");
const tex = createPreTexture(gpu, rows, n);
const enc0 = gpu.device.createCommandEncoder();
encodePreTextureCopy(enc0, preBuf, tex, rows);
gpu.device.queue.submit([enc0.finish()]);
const layout = { sizes: [n], kPerLayer: [k], gated: false };
const bufs = {
  pre: preBuf,
  preTex: tex,
  cmax: uploadStorage(gpu, cmax, "cmax"),
  layerTable: createLayerTable(gpu, layout),
  idx: createStorage(gpu, rows * k * 4, "idx"),
  val: createStorage(gpu, rows * k * 4, "val"),
};
const ops = selectTopKOp(gpu, bufs, layout, { n, rows, rowOffset: 0 });
const pipes = await Promise.all(ops.map((d) => getPipeline(gpu, d.kernel)));
for (let r = 0; r < 4; r++) {
  const ms = await timeGpu(gpu, (e) => encodeDispatches(gpu, e, ops, pipes));
  console.log(`select_topk ${rows} rows: ${ms.toFixed(1)} ms`);
}
