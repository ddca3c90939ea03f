/** Kernel textures get extents off powers of two (one llvmpipe compile per kernel, any shape). */
import assert from "node:assert/strict";
import { testGpu } from "../_util.ts";
import { kernelTextureExtent, notPowerOfTwo } from "../../lib/gpu/texture.ts";
import { createMatrixTexture, TEX_ROWS } from "../../lib/sae/ops/matrix_texture.ts";
import { createPreTexture } from "../../lib/sae/ops/topk.ts";

const isPowerOfTwo = (v: number) => v > 0 && (v & (v - 1)) === 0;

Deno.test("notPowerOfTwo moves powers of two to the next size that is not one", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 16, 192, 4096, 8192].map(notPowerOfTwo),
    [3, 3, 3, 5, 5, 17, 192, 4097, 8193],
  );
  for (let v = 1; v < 5000; v++) {
    const p = notPowerOfTwo(v);
    assert.ok(!isPowerOfTwo(p) && p >= v && p <= v + 2, `${v} → ${p}`);
  }
});

Deno.test("kernel textures: matrix and pre texture extents are never powers of two", async () => {
  const gpu = await testGpu();
  const max = gpu.device.limits.maxTextureDimension2D;
  // A size whose next non-power of two passes the limit stays as it is.
  assert.deepEqual(kernelTextureExtent(gpu, max, 64), [max, 65]);
  assert.deepEqual(kernelTextureExtent(gpu, 192, 70), [192, 70]);
  // d = 64 → 16 texels wide, 4 096 rows per layer (TEX_ROWS) and one layer of 64 rows: all moved.
  for (const [rows, d] of [[3 * TEX_ROWS, 64], [64, 128], [70, 768]]) {
    const m = createMatrixTexture(gpu, rows, d, "matrix");
    const { width, height } = m.texture;
    assert.ok(
      width >= d / 4 && height >= Math.min(rows, TEX_ROWS),
      `${rows}×${d}: ${width}×${height}`,
    );
    assert.ok(!isPowerOfTwo(width) && !isPowerOfTwo(height), `${rows}×${d}: ${width}×${height}`);
    assert.equal(m.texture.depthOrArrayLayers, Math.max(2, Math.ceil(rows / TEX_ROWS)));
    m.texture.destroy();
  }
  const pre = createPreTexture(gpu, 1024, 256);
  assert.deepEqual([pre.texture.width, pre.texture.height], [65, 1025]);
  pre.texture.destroy();
});
