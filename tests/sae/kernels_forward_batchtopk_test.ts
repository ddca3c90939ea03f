import assert from "node:assert/strict";
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import { selectBatchTopK } from "../../lib/sae/reference/select.ts";
import { createStorage, readF32, readU32 } from "../../lib/gpu/buffer.ts";
import { runOps } from "../../lib/sae/ops/grid.ts";
import { createLayerTable } from "../../lib/sae/ops/topk.ts";
import { uploadPre } from "./kernels_forward_twins.ts";
import { batchTopKOp, createBatchTopKScratch } from "../../lib/sae/ops/batch_topk.ts";

Deno.test("BatchTopK kernels match the reference (ties, capped rows, k·B ≥ B·n, 3 chunks)", async () => {
  const gpu = await testGpu();
  const cases = [
    { B: 37, n: 50, k: 3, hot: false },
    { B: 20, n: 63, k: 2, hot: true }, // one row holds far more than K winners: extras dropped
    { B: 5, n: 7, k: 7, hot: false }, // every value wins
    { B: 66, n: 129, k: 1, hot: false },
    { B: 9, n: 1024, k: 8, hot: true }, // select_batch's fast path (and its fallback on the hot row)
  ];
  for (const { B, n, k, hot } of cases) {
    const K = Math.min(n, 4 * k);
    const pre = randn(B * n, B * n + k);
    const r = rng(B + n);
    for (let i = 0; i < pre.length; i++) {
      const u = r();
      if (u < 0.1) pre[i] = 0.75; // ties at positive values
      else if (u < 0.15) pre[i] = 0;
    }
    if (hot) { for (let i = 0; i < n; i++) pre[3 * n + i] = 10 + (i % 5); }
    const want = selectBatchTopK(pre, B, n, k, K);
    const idx = createStorage(gpu, B * K * 4, "idx");
    const val = createStorage(gpu, B * K * 4, "val");
    const minKept = createStorage(gpu, 4, "minKept");
    const layerTable = createLayerTable(gpu, { sizes: [n], kPerLayer: [K], gated: false });
    const scratch = createBatchTopKScratch(gpu, B);
    const cuts = [0, Math.floor(B / 3), Math.floor((2 * B) / 3), B];
    const chunks = cuts.slice(0, -1).map((start, i) => ({
      pre: uploadPre(gpu, pre.subarray(start * n), cuts[i + 1] - start, n),
      rows: cuts[i + 1] - start,
      rowOffset: start,
    })).filter((c) => c.rows > 0);
    await runOps(
      gpu,
      batchTopKOp(gpu, { chunks, layerTable, idx, val, minKept, scratch }, { B, n, k, K }),
      "batchtopk",
    );
    const label = `B=${B} n=${n} k=${k}`;
    assert.deepEqual(await readU32(gpu, idx, B * K), want.idx, `idx ${label}`);
    assertClose(await readF32(gpu, val, B * K), want.val, {
      atol: 0,
      rtol: 0,
      label: `val ${label}`,
    });
    assert.equal(
      (await readF32(gpu, minKept, 1))[0],
      Math.fround(want.minKept),
      `minKept ${label}`,
    );
    for (
      const b of [
        idx,
        val,
        minKept,
        layerTable,
        ...Object.values(scratch),
        ...chunks.map((c) => c.pre),
      ]
    ) {
      b.destroy();
    }
  }
});
