/**
 * timeGpu reports the time of the work it records, on whatever adapter the tests run on (software
 * adapters: the wall clock, since their timestamps once read 0 ms for a 0.3 s decode in a bench).
 */
import assert from "node:assert/strict";
import { testGpu } from "../_util.ts";
import { createStorage, uploadStorage } from "../../lib/gpu/buffer.ts";
import { encodeDispatches, getPipeline } from "../../lib/gpu/kernel.ts";
import { timeGpu } from "../../lib/gpu/timer.ts";
import { releaseUniforms } from "../../lib/sae/ops/grid.ts";
import { createLevelBounds, sparseDecodeOp, treeLevels } from "../../lib/sae/ops/sparse_decode.ts";

Deno.test("timeGpu times the recorded dispatches: a sparse decode takes longer than an empty submit", async () => {
  const gpu = await testGpu();
  // A sparse decode of 1 024 rows × 32 slots × 768 columns: ~0.1 s on a software adapter.
  const B = 1024, d = 768, n = 4096, K = 32, plan = treeLevels([8, 8, 8, 8]);
  const bufs = {
    idx: uploadStorage(gpu, new Uint32Array(B * K).map((_, i) => (i * 7919) % n), "idx"),
    val: uploadStorage(gpu, new Float32Array(B * K).fill(0.5), "val"),
    decW: uploadStorage(gpu, new Float32Array(n * d).map((_, i) => Math.sin(i)), "decW"),
    bDec: createStorage(gpu, d * 4, "bDec"),
    levelBounds: createLevelBounds(gpu, plan),
    out: createStorage(gpu, plan.bounds.length * B * d * 4, "levels"),
  };
  const work = sparseDecodeOp(gpu, bufs, { B, d, K, plan, withBias: true });
  const pipelines = await Promise.all(work.map((x) => getPipeline(gpu, x.kernel)));
  const record = (enc: GPUCommandEncoder) => encodeDispatches(gpu, enc, work, pipelines);
  try {
    await timeGpu(gpu, record); // compile and warm up
    const empty = Math.min(await timeGpu(gpu, () => {}), await timeGpu(gpu, () => {}));
    const busy = Math.min(await timeGpu(gpu, record), await timeGpu(gpu, record));
    assert.ok(busy > 0 && busy > empty, `decode ${busy} ms, empty submit ${empty} ms`);
  } finally {
    releaseUniforms(work);
    for (const b of Object.values(bufs)) b.destroy();
  }
});
