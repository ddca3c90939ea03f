/**
 * How long `mapAsync` and `queue.submit` hold the host while the GPU has work queued (Deno's
 * WebGPU): the probe behind "Where the H200 step waits" in bench/README.md.
 *
 *   deno run -A bench/readback_wait.ts [--ms 200]
 *
 * A tiny copy into a staging buffer is submitted and left to finish; then a heavy submit (sparse
 * decodes, repeated to last about --ms milliseconds on this adapter) goes in behind it, and the
 * staging buffer is mapped. If the map call returns at once, the host could record more work while
 * the GPU runs; if it blocks for about --ms, every readback drains the whole queue. Also times a
 * second heavy submit made while the first still runs. Never run from tests.
 */
import { helpFromHeader } from "./_help.ts";
import { parseArgs } from "node:util";
import { getGpu } from "../lib/gpu/device.ts";
import { createStorage, uploadStorage } from "../lib/gpu/buffer.ts";
import { encodeDispatches, getPipeline } from "../lib/gpu/kernel.ts";
import { releaseUniforms } from "../lib/sae/ops/grid.ts";
import { createLevelBounds, sparseDecodeOp, treeLevels } from "../lib/sae/ops/sparse_decode.ts";

await helpFromHeader(import.meta.url);

const { values } = parseArgs({
  args: Deno.args,
  options: { ms: { type: "string", default: "200" } },
});
const targetMs = Number(values.ms);
if (!(targetMs > 0)) {
  console.error(
    `bench/readback_wait.ts: --ms must be a positive number of milliseconds (got ${values.ms})`,
  );
  Deno.exit(2);
}
const gpu = await getGpu({ quiet: true });
const B = 4096, d = 768, n = 24576, K = 32, plan = treeLevels([8, 8, 8, 8]);
const bufs = {
  idx: uploadStorage(gpu, new Uint32Array(B * K).map((_, i) => (i * 7919) % n), "idx"),
  val: uploadStorage(gpu, new Float32Array(B * K).fill(0.5), "val"),
  decW: uploadStorage(gpu, new Float32Array(n * d).map((_, i) => Math.sin(i)), "decW"),
  bDec: createStorage(gpu, d * 4, "bDec"),
  levelBounds: createLevelBounds(gpu, plan),
  out: createStorage(gpu, plan.bounds.length * B * d * 4, "levels"),
};
const work = sparseDecodeOp(gpu, bufs, { B, d, K, plan, withBias: true });
const pipes = await Promise.all(work.map((x) => getPipeline(gpu, x.kernel)));
const submitHeavy = (reps: number) => {
  const enc = gpu.device.createCommandEncoder();
  for (let r = 0; r < reps; r++) encodeDispatches(gpu, enc, work, pipes);
  gpu.device.queue.submit([enc.finish()]);
};
const idle = () => gpu.device.queue.onSubmittedWorkDone();

// Calibrate: decodes per heavy submit so that it lasts about targetMs.
submitHeavy(1);
await idle();
let t = performance.now();
submitHeavy(1);
await idle();
const oneMs = Math.max(0.05, performance.now() - t - 11); // ~11 ms: Deno's poll latency
const reps = Math.max(1, Math.round(targetMs / oneMs));
t = performance.now();
submitHeavy(reps);
await idle();
const heavyMs = performance.now() - t;

const staging = gpu.device.createBuffer({
  size: 16,
  usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
});
const enc = gpu.device.createCommandEncoder();
enc.copyBufferToBuffer(bufs.bDec, 0, staging, 0, 16);
gpu.device.queue.submit([enc.finish()]);
await new Promise((r) => setTimeout(r, 50)); // the tiny copy is long done
submitHeavy(reps);
t = performance.now();
const mapped = staging.mapAsync(GPUMapMode.READ);
const mapCallMs = performance.now() - t;
await mapped;
const resolveMs = performance.now() - t - mapCallMs;
staging.unmap();
await idle();

submitHeavy(reps);
t = performance.now();
submitHeavy(reps);
const secondSubmitMs = performance.now() - t;
await idle();

console.log(`adapter: ${gpu.description}`);
console.log(`heavy submit: ${reps} decodes, ${heavyMs.toFixed(1)} ms to idle (wall clock)`);
console.log(
  `mapAsync of a buffer whose copy was done, with a heavy submit queued behind it: the call held ` +
    `the host ${mapCallMs.toFixed(1)} ms, the promise resolved ${resolveMs.toFixed(1)} ms later`,
);
console.log(
  `a heavy submit made while another runs held the host ${secondSubmitMs.toFixed(1)} ms`,
);
releaseUniforms(work);
staging.destroy();
for (const b of Object.values(bufs)) b.destroy();
