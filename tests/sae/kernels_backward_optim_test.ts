/**
 * Optimiser and dead-tracking kernels (kernels/adam.wgsl, kernels/dead.wgsl) against their
 * TypeScript twins in lib/sae/reference: remove the parallel gradient part, Adam with bias
 * correction, row renormalisation (plus gradient zeroing); fire counts and tokens-since-fired.
 */
import assert from "node:assert/strict";
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import { createStorage, readF32, readU32, uploadStorage } from "../../lib/gpu/buffer.ts";
import { runKernels } from "../../lib/gpu/kernel.ts";
import {
  ADAM_CHUNK_ROWS,
  adamDecoderRowsOp,
  adamDenseOp,
  type AdamTensor,
  adamTexturedChunks,
  createAdamScratch,
  destroyAdamScratch,
} from "../../lib/sae/ops/adam.ts";
import {
  createMatrixTexture,
  encodeMatrixTextureCopy,
  matrixTextureView,
} from "../../lib/sae/ops/matrix_texture.ts";
import { deadMaskOp, deadUpdateOp, fireCountOp } from "../../lib/sae/ops/dead.ts";
import {
  adamStep,
  fireCounts,
  removeParallelGrad,
  renormRows,
  updateDeadCounters,
} from "../../lib/sae/reference/ops.ts";
import type { Gpu } from "../../lib/gpu/device.ts";

function unitRows(x: Float32Array, rows: number, cols: number): Float32Array {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += x[r * cols + j] ** 2;
    for (let j = 0; j < cols; j++) x[r * cols + j] /= Math.sqrt(s);
  }
  return x;
}

function tensor(
  gpu: Gpu,
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
): AdamTensor {
  return {
    param: uploadStorage(gpu, p, "p"),
    grad: uploadStorage(gpu, g, "g"),
    m: uploadStorage(gpu, m, "m"),
    v: uploadStorage(gpu, v, "v"),
  };
}

for (const [rows, cols] of [[1, 1], [13, 77], [130, 65], [5, 300], [7, 36], [1, 4], [9, 128]]) {
  Deno.test(`adam_rows and adam_dense equal the float64 twins over 3 steps (${rows}x${cols}), with the workgroups of software adapters and of GPUs`, async () => {
    const device = await testGpu();
    // Workgroup sizes follow the adapter (8 and 256 lanes on software adapters, 64 on GPUs): run both.
    for (const isFallback of [true, false]) await adamSteps({ ...device, isFallback }, rows, cols);
  });
}

// Every value before the step read through textures (software adapters; d % 64 == 0), chunk by
// chunk: 13 rows in chunks of 5 (a short last one); 4 100 rows, whose parameters cross the
// textures' first layer of 4 096, in the default chunks (2 048) and in chunks of 4 098, whose
// scratch crosses it too.
for (const [rows, cols, chunk] of [[13, 128, 5], [4100, 64, 0], [4100, 64, 4098]]) {
  Deno.test(
    `adam_rows4 and adam_dense4 reading textures chunk by chunk equal the float64 twins (${rows}x${cols}, chunks of ${
      chunk || ADAM_CHUNK_ROWS
    })`,
    async () => {
      const device = await testGpu();
      await adamSteps({ ...device, isFallback: true }, rows, cols, { chunk: chunk || undefined });
    },
  );
}

/** Three Adam steps of both updates on `gpu` against the float64 twins. */
async function adamSteps(
  gpu: Gpu,
  rows: number,
  cols: number,
  textures?: { chunk?: number },
) {
  const len = rows * cols;
  const p0 = unitRows(randn(len, rows), rows, cols);
  const m0 = randn(len, rows + 1).map((x) => x * 1e-3);
  const v0 = randn(len, rows + 2).map((x) => x * x * 1e-5);
  const dec = tensor(gpu, p0, new Float32Array(len), m0, v0);
  const enc = tensor(gpu, p0, new Float32Array(len), m0, v0);
  // As the engine's forward leaves them: the parameters before the step mirrored in textures.
  const tex = textures
    ? {
      dec: createMatrixTexture(gpu, rows, cols, "decW texture"),
      enc: createMatrixTexture(gpu, rows, cols, "encW texture"),
    }
    : undefined;
  const scratch = textures && createAdamScratch(gpu, cols, textures.chunk);
  const [pd, md, vd] = [p0.slice(), m0.slice(), v0.slice()];
  const [pe, me, ve] = [p0.slice(), m0.slice(), v0.slice()];
  const lr = 1e-3;
  for (let t = 1; t <= 3; t++) {
    const g = randn(len, 100 * t + rows);
    // Zero gradient rows still move (dense Adam); make a few.
    for (let r = 0; r < rows; r += 3) g.fill(0, r * cols, (r + 1) * cols);
    const gpuG = new Float32Array(g);
    const gd = g.slice();
    const ge = g.slice();
    gpu.device.queue.writeBuffer(dec.grad, 0, gpuG);
    gpu.device.queue.writeBuffer(enc.grad, 0, gpuG);
    if (tex) {
      const copies = gpu.device.createCommandEncoder();
      encodeMatrixTextureCopy(copies, dec.param, tex.dec);
      encodeMatrixTextureCopy(copies, enc.param, tex.enc);
      gpu.device.queue.submit([copies.finish()]);
    }
    if (tex && scratch) {
      const chunks = [
        ...adamTexturedChunks(gpu, dec, { param: matrixTextureView(tex.dec), scratch }, {
          rows,
          cols,
          decoder: true,
        }, { lr, t }),
        ...adamTexturedChunks(gpu, enc, { param: matrixTextureView(tex.enc), scratch }, {
          rows,
          cols,
          decoder: false,
        }, { lr, t }),
      ];
      assert.equal(chunks.length, 2 * Math.ceil(rows / scratch.rows));
      for (const c of chunks) {
        const copies = gpu.device.createCommandEncoder();
        c.copy(copies);
        gpu.device.queue.submit([copies.finish()]);
        await runKernels(gpu, c.dispatches, "adam test");
      }
    } else {
      await runKernels(gpu, [
        ...adamDecoderRowsOp(gpu, dec, rows, cols, { lr, t }),
        ...adamDenseOp(gpu, enc, len, { lr, t }),
      ], "adam test");
    }
    removeParallelGrad(gd, pd, rows, cols);
    adamStep(pd, gd, md, vd, t, lr);
    renormRows(pd, rows, cols);
    adamStep(pe, ge, me, ve, t, lr);
    const tol = { atol: 2e-6, rtol: 1e-4 };
    assertClose(await readF32(gpu, dec.param), pd, { ...tol, label: `decW step ${t}` });
    assertClose(await readF32(gpu, dec.m), md, { ...tol, label: `dec m step ${t}` });
    assertClose(await readF32(gpu, dec.v), vd, { ...tol, atol: 1e-9, label: `dec v step ${t}` });
    assertClose(await readF32(gpu, enc.param), pe, { ...tol, label: `encW step ${t}` });
    assertClose(await readF32(gpu, enc.m), me, { ...tol, label: `enc m step ${t}` });
    assertClose(await readF32(gpu, enc.v), ve, { ...tol, atol: 1e-9, label: `enc v step ${t}` });
    // Gradients are consumed: zero for the next sparse backward pass.
    assert.ok((await readF32(gpu, dec.grad)).every((x) => x === 0), "decoder grad zeroed");
    assert.ok((await readF32(gpu, enc.grad)).every((x) => x === 0), "encoder grad zeroed");
    const p = await readF32(gpu, dec.param);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += p[r * cols + j] ** 2;
      assert.ok(Math.abs(Math.sqrt(s) - 1) < 1e-5, `row ${r} unit norm`);
    }
  }
  for (const b of [dec, enc].flatMap((x) => [x.param, x.grad, x.m, x.v])) b.destroy();
  tex?.dec.texture.destroy();
  tex?.enc.texture.destroy();
  if (scratch) destroyAdamScratch(scratch);
}

for (const [B, K, n] of [[1, 1, 1], [37, 5, 53], [300, 9, 7]]) {
  Deno.test(`fire_count and dead_update equal the twin (B=${B} K=${K} n=${n})`, async () => {
    const gpu = await testGpu();
    const r = rng(B * 7 + K);
    const idx = new Uint32Array(B * K);
    const val = new Float32Array(B * K);
    for (let e = 0; e < B * K; e++) {
      const u = r();
      idx[e] = u < 0.1 ? 0xffffffff : Math.floor(r() * r() * n);
      // Values around the threshold: 0, 1e-3 exactly (does not fire), above.
      val[e] = u < 0.1 ? 0 : [0, 1e-3, 2e-3, r()][Math.floor(r() * 4)];
    }
    const since0 = new Uint32Array(n).map((_, f) => (f % 3 === 0 ? 0xffffffff - 5 : f * 1000));
    const counts = createStorage(gpu, n * 4, "counts");
    const active = createStorage(gpu, n * 4, "active");
    const since = uploadStorage(gpu, since0, "since");
    const idxB = uploadStorage(gpu, idx, "idx");
    const valB = uploadStorage(gpu, val, "val");
    await runKernels(gpu, [
      ...fireCountOp(gpu, { idx: idxB, val: valB, counts, active }, { B, K }),
      ...deadUpdateOp(gpu, { counts, since }, { n, tokens: B }),
    ], "dead test");
    const want = fireCounts({ idx, val, K }, B, n);
    const wantSince = since0.slice();
    updateDeadCounters(wantSince, want, B);
    const wantActive = new Uint32Array(n);
    for (let e = 0; e < B * K; e++) if (idx[e] !== 0xffffffff && val[e] > 0) wantActive[idx[e]]++;
    assert.deepEqual(await readU32(gpu, counts), want);
    assert.deepEqual(await readU32(gpu, since), wantSince);
    assert.deepEqual(await readU32(gpu, active), wantActive);
    for (const b of [counts, active, since, idxB, valB]) b.destroy();
  });
}

Deno.test("dead_mask marks since ≥ deadTokens (odd n, saturated counters, threshold above u32)", async () => {
  const gpu = await testGpu();
  const n = 131;
  const since0 = new Uint32Array(n).map((_, f) => [0, 99, 100, 101, 0xffffffff][f % 5] + (f % 7));
  const since = uploadStorage(gpu, since0, "since");
  const dead = uploadStorage(gpu, new Uint32Array(n).fill(7), "dead (poisoned)");
  for (const deadTokens of [100, 0xffffffff, 2 ** 33]) {
    await runKernels(gpu, deadMaskOp(gpu, { since, dead }, { n, deadTokens }), "dead mask");
    const want = Array.from(since0, (s) => (s >= deadTokens ? 1 : 0));
    assert.deepEqual(Array.from(await readU32(gpu, dead)), want, `deadTokens ${deadTokens}`);
  }
  assert.ok(Array.from(since0).some((s) => s === 0xffffffff), "a saturated counter is tested");
  since.destroy();
  dead.destroy();
});
