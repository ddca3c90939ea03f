/** GPU errors surface as GpuError naming the kernel or buffer — never silently. */
import assert from "node:assert/strict";
import { testGpu } from "../_util.ts";
import { GpuError } from "../../lib/errors.ts";
import { getPipeline, runKernels } from "../../lib/gpu/kernel.ts";
import { createStorage, uniforms } from "../../lib/gpu/buffer.ts";

Deno.test("a dispatch with a wrongly typed binding throws GpuError naming the kernel", async () => {
  const gpu = await testGpu();
  const src = createStorage(gpu, 16, "src");
  const params = uniforms(gpu, { n: 8, row_words: 256 });
  // Binding 1 must be a storage buffer; a uniform buffer there is a validation error.
  await assert.rejects(
    runKernels(gpu, [{
      kernel: { file: "unpack_f16.wgsl", entry: "main", constants: { WG: 256 } },
      buffers: [src, params, params],
      workgroups: [1],
    }], "bad binding"),
    (e: Error) =>
      e instanceof GpuError && /unpack_f16\.wgsl:main/.test(e.message) &&
      /validation error/.test(e.message),
  );
  src.destroy();
  params.destroy();
});

Deno.test("a missing kernel file and an unknown entry point throw GpuError naming them", async () => {
  const gpu = await testGpu();
  await assert.rejects(
    getPipeline(gpu, { file: "no_such_kernel.wgsl", entry: "main" }),
    (e: Error) => e instanceof GpuError && /kernels\/no_such_kernel\.wgsl/.test(e.message),
  );
  await assert.rejects(
    getPipeline(gpu, { file: "unpack_f16.wgsl", entry: "nope" }),
    (e: Error) => e instanceof GpuError && /unpack_f16\.wgsl:nope/.test(e.message),
  );
});

Deno.test("a buffer beyond maxBufferSize throws GpuError naming the buffer and the fix", async () => {
  const gpu = await testGpu();
  const max = gpu.device.limits.maxBufferSize;
  assert.throws(
    () => createStorage(gpu, max + 4, "huge activations"),
    (e: Error) =>
      e instanceof GpuError && /huge activations/.test(e.message) &&
      /smaller batches/.test(e.message),
  );
});
