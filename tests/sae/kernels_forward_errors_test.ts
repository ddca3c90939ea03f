import assert from "node:assert/strict";
import { testGpu } from "../_util.ts";
import { createStorage } from "../../lib/gpu/buffer.ts";
import { encoderGemmOp, maxGemmChunkRows } from "../../lib/sae/ops/encoder_gemm.ts";
import { createLayerTable, selectAuxOp, validateLayout } from "../../lib/sae/ops/topk.ts";
import { createLevelBounds, textureDecodeOp, treeLevels } from "../../lib/sae/ops/sparse_decode.ts";
import { batchTopKOp, createBatchTopKScratch } from "../../lib/sae/ops/batch_topk.ts";
import { createMatrixTexture } from "../../lib/sae/ops/matrix_texture.ts";

Deno.test("forward ops reject bad sizes with messages that name the field and the fix", async () => {
  const gpu = await testGpu();
  const b = createStorage(gpu, 64, "small");
  const n = 1000;
  const tooMany = maxGemmChunkRows(gpu, n) + 1;
  assert.throws(
    () =>
      encoderGemmOp(gpu, { xs: b, encW: b, bDec: b, pre: b }, {
        d: 8,
        n,
        rows: tooMany,
        rowOffset: 0,
      }),
    /chunks of at most \d+ rows \(maxGemmChunkRows\)/,
  );
  assert.throws(
    () =>
      encoderGemmOp(gpu, { xs: b, encW: b, bDec: b, pre: b }, {
        d: 6,
        n: 4,
        rows: 1,
        rowOffset: 0,
        variant: "block4",
      }),
    /block4 variant needs d_in divisible by 4 \(got 6\)/,
  );
  assert.throws(
    () => validateLayout({ sizes: [10, 20], kPerLayer: [3], gated: true }),
    /one k per layer/,
  );
  assert.throws(
    () => validateLayout({ sizes: [10, 20], kPerLayer: [3, 21], gated: true }),
    /k for layer 1 is 21; it must be an integer in \[1, min\(layer size 20, 256\)\]/,
  );
  assert.throws(
    () => validateLayout({ sizes: [1000], kPerLayer: [300], gated: false }),
    /k for layer 0 is 300/,
  );
  assert.throws(
    () => createLevelBounds(gpu, treeLevels(new Array(9).fill(1))),
    /9 levels; the kernel supports 1 to 8/,
  );
  const layout = { sizes: [8], kPerLayer: [2], gated: false };
  const layerTable = createLayerTable(gpu, layout);
  const aux = { pre: b, layerTable, idx: b, val: b, dead: b, auxIdx: b, auxVal: b };
  assert.throws(
    () => selectAuxOp(gpu, aux, layout, { n: 8, rows: 1, rowOffset: 0, auxLayer: 0, kAux: 257 }),
    /kAux is 257; it must be in \[1, 256\]/,
  );
  const scratch = createBatchTopKScratch(gpu, 4);
  assert.throws(
    () =>
      batchTopKOp(gpu, {
        chunks: [{ pre: b, rows: 2, rowOffset: 0 }],
        layerTable,
        idx: b,
        val: b,
        minKept: b,
        scratch,
      }, { B: 4, n: 8, k: 1, K: 2 }),
    /chunks cover 2 rows but the batch has 4; pass every chunk/,
  );
  assert.throws(
    () => createMatrixTexture(gpu, 10, 48, "decW texture"),
    /divisible by 64 \(got 48\)/,
  );
  const decT = createMatrixTexture(gpu, 10, 64, "decW texture");
  assert.throws(
    () =>
      textureDecodeOp(gpu, decT, { idx: b, val: b, bDec: b, levelBounds: b, out: b }, {
        B: 1,
        d: 128,
        K: 2,
        plan: { mode: "feature", bounds: [5, 10] },
        withBias: true,
      }),
    /the texture holds rows of 64, the decode 128/,
  );
  decT.texture.destroy();
  for (const x of [b, layerTable, ...Object.values(scratch)]) x.destroy();
});
