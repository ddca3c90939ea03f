/**
 * timeGpu reports the time of the work it records, on whatever adapter the tests run on (software
 * adapters: the wall clock, since their timestamps once read 0 ms for a 0.3 s decode in a bench).
 */
import assert from "node:assert/strict";
import { testGpu } from "../_util.ts";
import { createStorage, uniforms } from "../../lib/gpu/buffer.ts";
import { type Dispatch, encodeDispatches, getPipeline } from "../../lib/gpu/kernel.ts";
import { timeGpu } from "../../lib/gpu/timer.ts";
import { releaseUniforms } from "../../lib/sae/ops/grid.ts";

Deno.test("timeGpu times the recorded dispatches: real work takes longer than an empty submit", async () => {
  const gpu = await testGpu();
  // 4 dispatches of unpack_f16 over 8M values: ~80 ms on a software adapter.
  const words = 1 << 22, WG = 256;
  const src = createStorage(gpu, words * 4, "src");
  const dst = createStorage(gpu, words * 8, "dst");
  const work: Dispatch[] = Array.from({ length: 4 }, () => ({
    kernel: { file: "unpack_f16.wgsl", entry: "main", constants: { WG } },
    buffers: [src, dst, uniforms(gpu, { n: 2 * words, row_words: WG * 65535 })],
    workgroups: [words / WG],
  }));
  const pipelines = await Promise.all(work.map((x) => getPipeline(gpu, x.kernel)));
  const record = (enc: GPUCommandEncoder) => encodeDispatches(gpu, enc, work, pipelines);
  try {
    await timeGpu(gpu, record); // compile and warm up
    const empty = Math.min(await timeGpu(gpu, () => {}), await timeGpu(gpu, () => {}));
    const busy = Math.min(await timeGpu(gpu, record), await timeGpu(gpu, record));
    assert.ok(busy > 0 && busy > empty, `unpack ${busy} ms, empty submit ${empty} ms`);
  } finally {
    releaseUniforms(work);
    src.destroy();
    dst.destroy();
  }
});
