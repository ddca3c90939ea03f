/**
 * AuxK's selection (kernels/topk.wgsl select_aux) alone: the shape (n = 24 576, kAux = 256)
 * with every 20th feature dead (5 %, as `bench/train_step.ts --dead-every 20`), on pseudo-random
 * pre read through its texture mirror as the engine does on software adapters.
 *
 *   deno run -A bench/aux_select_probe.ts [rows=1024]
 *
 * Prints the wall time of four runs (the first includes warm-up).
 */
import { helpFromHeader } from "./_help.ts";
import { randomPre, uploadPreWithTexture } from "./_probe.ts";
import { getGpu } from "../lib/gpu/device.ts";
import { createStorage, uploadStorage } from "../lib/gpu/buffer.ts";
import { encodeDispatches, getPipeline } from "../lib/gpu/kernel.ts";
import { timeGpu } from "../lib/gpu/timer.ts";
import { createLayerTable, selectAuxOp } from "../lib/sae/ops/topk.ts";

await helpFromHeader(import.meta.url);
const gpu = await getGpu();
const rows = Number(Deno.args[0] ?? 1024);
/** Features and AuxK slots of the benchmark shape. */
const n = 24576, kAux = 256;
const pre = randomPre(rows, n);
const dead = new Uint32Array(n).map((_, f) => (f % 20 === 0 ? 1 : 0));
const { preBuf, tex } = uploadPreWithTexture(gpu, pre, rows, n);
const layout = { sizes: [n], kPerLayer: [32], gated: false };
const bufs = {
  pre: preBuf,
  preTex: tex,
  layerTable: createLayerTable(gpu, layout),
  idx: createStorage(gpu, rows * 32 * 4, "idx"),
  val: createStorage(gpu, rows * 32 * 4, "val"),
  dead: uploadStorage(gpu, dead, "dead"),
  auxIdx: createStorage(gpu, rows * kAux * 4, "auxIdx"),
  auxVal: createStorage(gpu, rows * kAux * 4, "auxVal"),
};
const ops = selectAuxOp(gpu, bufs, layout, {
  n,
  rows,
  rowOffset: 0,
  auxLayer: 0,
  kAux,
  deadBound: 1229,
});
const pipes = await Promise.all(ops.map((d) => getPipeline(gpu, d.kernel)));
for (let r = 0; r < 4; r++) {
  const ms = await timeGpu(gpu, (e) => encodeDispatches(gpu, e, ops, pipes));
  console.log(`select_aux ${rows} rows: ${ms.toFixed(1)} ms`);
}
