/** Uniform buffers shared by content, and bind groups reused across submits. */
import assert from "node:assert/strict";
import { testGpu } from "../_util.ts";
import { createStorage, packUniforms, readF32, writeBuffer } from "../../lib/gpu/buffer.ts";
import {
  isSharedUniform,
  SHARED_UNIFORMS_MAX,
  sharedUniforms,
} from "../../lib/gpu/shared_uniforms.ts";
import { BIND_GROUPS_MAX, bindGroupFor } from "../../lib/gpu/bind_groups.ts";
import { type Dispatch, getPipeline, runKernels } from "../../lib/gpu/kernel.ts";
import { releaseUniforms } from "../../lib/sae/ops/grid.ts";
import { toF16 } from "../../lib/util/f16.ts";

const UNPACK = { file: "unpack_f16.wgsl", entry: "main", constants: { WG: 64 } };

Deno.test("packUniforms writes u32 fields and the listed floats, padded to 16 bytes", () => {
  const u = packUniforms({ a: 3, b: -1, lr: 0.5, c: 7, d: 9 }, ["lr"]);
  assert.equal(u.byteLength, 32);
  assert.deepEqual(Array.from(u.slice(0, 2)), [3, 0xffffffff]);
  assert.equal(new Float32Array(u.buffer)[2], 0.5);
  assert.deepEqual(Array.from(u.slice(3)), [7, 9, 0, 0, 0]);
});

Deno.test("sharedUniforms: equal contents give one buffer, which releaseUniforms leaves alone", async () => {
  const gpu = await testGpu();
  const a = sharedUniforms(gpu, { n: 5, row_words: 64 });
  assert.equal(sharedUniforms(gpu, { n: 5, row_words: 64 }), a);
  assert.notEqual(sharedUniforms(gpu, { n: 6, row_words: 64 }), a);
  // The same bits as a float are other contents.
  assert.notEqual(sharedUniforms(gpu, { n: 5, row_words: 64 }, ["n"]), a);
  assert.ok(isSharedUniform(a));
  const src = createStorage(gpu, 12, "src");
  const dst = createStorage(gpu, 20, "dst");
  try {
    writeBuffer(gpu, src, toF16(new Float32Array([1, -2, 3.5, 0.25, 8])));
    const work: Dispatch[] = [{ kernel: UNPACK, buffers: [src, dst, a], workgroups: [1] }];
    await runKernels(gpu, work, "shared uniforms");
    releaseUniforms(work);
    assert.deepEqual(Array.from(await readF32(gpu, dst, 5)), [1, -2, 3.5, 0.25, 8]);
    // Still usable: releaseUniforms did not destroy it.
    await runKernels(gpu, work, "shared uniforms again");
    assert.deepEqual(Array.from(await readF32(gpu, dst, 5)), [1, -2, 3.5, 0.25, 8]);
  } finally {
    src.destroy();
    dst.destroy();
  }
});

Deno.test("bindGroupFor reuses a bind group for the same pipeline and resources only", async () => {
  const gpu = await testGpu();
  const pipeline = await getPipeline(gpu, UNPACK);
  const other = await getPipeline(gpu, { ...UNPACK, constants: { WG: 32 } });
  const [src, dst, dst2] = [12, 20, 20].map((b, i) => createStorage(gpu, b, `buf${i}`));
  const u = sharedUniforms(gpu, { n: 5, row_words: 64 });
  try {
    const label = () => "test";
    const g = bindGroupFor(gpu, pipeline, [src, dst, u], label);
    assert.equal(bindGroupFor(gpu, pipeline, [src, dst, u], label), g);
    assert.notEqual(bindGroupFor(gpu, pipeline, [src, dst2, u], label), g);
    assert.notEqual(bindGroupFor(gpu, other, [src, dst, u], label), g);
    // A reused bind group names the buffers, not their contents: new data goes through.
    for (const values of [[1, 2, 3, 4, 5], [-6, 0.5, 7, 8, 9.25]]) {
      writeBuffer(gpu, src, toF16(new Float32Array(values)));
      await runKernels(gpu, [{ kernel: UNPACK, buffers: [src, dst, u], workgroups: [1] }]);
      assert.deepEqual(Array.from(await readF32(gpu, dst, 5)), values);
    }
  } finally {
    for (const b of [src, dst, dst2]) b.destroy();
  }
});

Deno.test("both caches start afresh within their bound, and what they dropped still works", async () => {
  const gpu = await testGpu();
  // Other tests share the device's caches: whatever they hold, MAX more entries must drop `first`.
  const first = sharedUniforms(gpu, { n: 5, row_words: 1_000_000 });
  for (let i = 1; i <= SHARED_UNIFORMS_MAX; i++) {
    sharedUniforms(gpu, { n: 5, row_words: 1_000_000 + i });
  }
  assert.notEqual(sharedUniforms(gpu, { n: 5, row_words: 1_000_000 }), first, "dropped");

  const pipeline = await getPipeline(gpu, UNPACK);
  const src = createStorage(gpu, 12, "src");
  const dst = createStorage(gpu, 20, "dst");
  const us = Array.from(
    { length: BIND_GROUPS_MAX + 1 },
    (_, i) => sharedUniforms(gpu, { n: 5, row_words: 3_000_000 + i }),
  );
  try {
    const label = () => "bound test";
    const g = bindGroupFor(gpu, pipeline, [src, dst, us[0]], label);
    for (let i = 1; i <= BIND_GROUPS_MAX; i++) {
      bindGroupFor(gpu, pipeline, [src, dst, us[i]], label);
    }
    assert.notEqual(bindGroupFor(gpu, pipeline, [src, dst, us[0]], label), g, "dropped");
    // The dropped uniform buffer was not destroyed: a dispatch through it still runs.
    writeBuffer(gpu, src, toF16(new Float32Array([3, 1, 4, 1, 5])));
    await runKernels(gpu, [{ kernel: UNPACK, buffers: [src, dst, first], workgroups: [1] }]);
    assert.deepEqual(Array.from(await readF32(gpu, dst, 5)), [3, 1, 4, 1, 5]);
  } finally {
    src.destroy();
    dst.destroy();
  }
});
