/**
 * The forward kernels chained as the engine will chain them (tree SAE, 3 layers), against the
 * shared TS reference lib/sae/reference (the contract's owner), not only this folder's twins.
 */
import assert from "node:assert/strict";
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import * as ref from "../../lib/sae/reference/ops.ts";
import { createStorage, readF32, readU32, uploadStorage } from "../../lib/gpu/buffer.ts";
import { runOps } from "../../lib/sae/ops/grid.ts";
import { standardizeOp } from "../../lib/sae/ops/standardize.ts";
import { encoderGemmOp } from "../../lib/sae/ops/encoder_gemm.ts";
import {
  createLayerTable,
  preChunkBytes,
  selectAuxOp,
  selectTopKOp,
} from "../../lib/sae/ops/topk.ts";
import {
  createLevelBounds,
  matryoshkaLevels,
  singleLevel,
  sparseDecodeOp,
} from "../../lib/sae/ops/sparse_decode.ts";
import { lossBlocksLength, lossTermCount, lossTermsOp } from "../../lib/sae/ops/loss.ts";

Deno.test("tree forward pass on the GPU agrees with lib/sae/reference (codes exact, sums 1e-4)", async () => {
  const gpu = await testGpu();
  const [B, d] = [45, 63];
  const sizes = [40, 90, 600], kPerLayer = [6, 3, 4];
  const n = sizes.reduce((a, b) => a + b, 0),
    K = kPerLayer.reduce((a, b) => a + b, 0),
    L = sizes.length;
  const r = rng(7);
  const x = randn(B * d, 1).map((v, i) => 2 * v + (i % 3));
  const encW = randn(n * d, 2).map((v) => v / Math.sqrt(d));
  const decW = encW.slice();
  ref.renormRows(decW, n, d);
  const bDec = randn(d, 3).map((v) => 0.05 * v);
  let o = 0;
  const parents = sizes.map((s) => {
    const p = new Int32Array(s).map(() => Math.floor(r() * (o + 1)));
    o += s;
    return p;
  });
  const flatParents = new Int32Array(n);
  parents.reduce((off, p) => (flatParents.set(p, off), off + p.length), 0);
  const featureLayer = new Uint32Array(n);
  sizes.reduce((off, s, l) => (featureLayer.fill(l, off, off + s), off + s), 0);
  const dead = new Uint32Array(n).map(() => (r() < 0.5 ? 1 : 0));

  // GPU: standardize → GEMM → gated top-k → level decode → AuxK on layer 1 → decode ê → loss sums.
  const xBuf = uploadStorage(gpu, x, "x");
  const xs = createStorage(gpu, B * d * 4, "xs");
  const mean = createStorage(gpu, B * 4, "mean"), std = createStorage(gpu, B * 4, "std");
  const encBuf = uploadStorage(gpu, encW, "encW"), decBuf = uploadStorage(gpu, decW, "decW");
  const bDecBuf = uploadStorage(gpu, bDec, "bDec");
  const pre = createStorage(gpu, preChunkBytes(B, n), "pre");
  const layout = { sizes, kPerLayer, gated: true };
  const layerTable = createLayerTable(gpu, layout);
  const parentsBuf = uploadStorage(gpu, flatParents, "parents");
  const idx = createStorage(gpu, B * K * 4, "idx"), val = createStorage(gpu, B * K * 4, "val");
  const plan = matryoshkaLevels(sizes); // level of a slot = its feature's layer, as the reference
  const levelBounds = createLevelBounds(gpu, plan);
  const levels = createStorage(gpu, L * B * d * 4, "levels");
  await runOps(gpu, [
    ...standardizeOp(gpu, { x: xBuf, xs, mean, std }, { B, d }),
    ...encoderGemmOp(gpu, { xs, encW: encBuf, bDec: bDecBuf, pre }, {
      d,
      n,
      rows: B,
      rowOffset: 0,
    }),
    ...selectTopKOp(gpu, { pre, layerTable, parents: parentsBuf, idx, val }, layout, {
      n,
      rows: B,
      rowOffset: 0,
    }),
    ...sparseDecodeOp(gpu, { idx, val, decW: decBuf, bDec: bDecBuf, levelBounds, out: levels }, {
      B,
      d,
      K,
      plan,
      withBias: true,
    }),
  ], "tree forward");

  const want = ref.standardize(x, B, d);
  const xsGot = await readF32(gpu, xs, B * d);
  assertClose(xsGot, want.xs, { atol: 1e-5, rtol: 1e-5, label: "xs" });
  const preGot = await readF32(gpu, pre, B * n);
  assertClose(preGot, ref.encode(xsGot, encW, bDec, B, d, n), {
    atol: 1e-4,
    rtol: 1e-4,
    label: "pre",
  });
  // Selection on the GPU's own pre: discrete outputs must match exactly.
  const codes = ref.selectTree(preGot, B, n, sizes, kPerLayer, parents);
  const idxGot = await readU32(gpu, idx, B * K), valGot = await readF32(gpu, val, B * K);
  assert.deepEqual(idxGot, codes.idx, "tree codes idx");
  assertClose(valGot, codes.val, { atol: 0, rtol: 0, label: "tree codes val" });
  const recon = ref.levelReconstructions(idxGot, valGot, B, K, decW, bDec, d, featureLayer, L);
  const levelsGot = await readF32(gpu, levels, L * B * d);
  recon.forEach((lv, l) =>
    assertClose(levelsGot.subarray(l * B * d, (l + 1) * B * d), lv, {
      atol: 1e-5,
      rtol: 1e-5,
      label: `level ${l}`,
    })
  );

  // AuxK on layer 1 (gated), kAux = min(auxK, dead in the layer) as the reference sizes it.
  const group = { start: sizes[0], end: sizes[0] + sizes[1], level: 1, alpha: 1 / 32, gated: true };
  const deadInLayer = dead.subarray(group.start, group.end).reduce((a, b) => a + b, 0);
  const kAux = Math.min(256, deadInLayer);
  const auxCodes = ref.selectAux(preGot, B, n, group, new Uint8Array(dead), 256, codes, parents);
  const deadBuf = uploadStorage(gpu, dead, "dead");
  const auxIdx = createStorage(gpu, B * kAux * 4, "auxIdx"),
    auxVal = createStorage(gpu, B * kAux * 4, "auxVal");
  const ehat = createStorage(gpu, B * d * 4, "ehat");
  const auxBounds = createLevelBounds(gpu, singleLevel(kAux));
  const T = lossTermCount(L, 1);
  const partials = createStorage(gpu, T * d * 4, "partials"),
    blocks = createStorage(gpu, lossBlocksLength(B, d, T) * 4, "loss blocks"),
    terms = createStorage(gpu, T * 4, "terms");
  await runOps(gpu, [
    ...selectAuxOp(
      gpu,
      {
        pre,
        layerTable,
        parents: parentsBuf,
        idx,
        val,
        dead: deadBuf,
        auxIdx,
        auxVal,
      },
      layout,
      { n, rows: B, rowOffset: 0, auxLayer: 1, kAux },
    ),
    ...sparseDecodeOp(gpu, {
      idx: auxIdx,
      val: auxVal,
      decW: decBuf,
      bDec: bDecBuf,
      levelBounds: auxBounds,
      out: ehat,
    }, {
      B,
      d,
      K: kAux,
      plan: singleLevel(kAux),
      withBias: false,
    }),
    ...lossTermsOp(gpu, { xs, levels, aux: [{ ehat, level: 1 }], partials, blocks, terms }, {
      B,
      d,
      L,
    }),
  ], "tree aux + loss");
  assert.deepEqual(await readU32(gpu, auxIdx, B * kAux), auxCodes.idx, "aux idx");
  assertClose(await readF32(gpu, auxVal, B * kAux), auxCodes.val, {
    atol: 0,
    rtol: 0,
    label: "aux val",
  });
  const loss = ref.losses(xsGot, B, d, recon, decW, [group], [auxCodes]);
  const t = await readF32(gpu, terms, T);
  const tol = { atol: 1e-6, rtol: 1e-4 };
  assertClose([t[0]], [loss.totalVar], { ...tol, label: "totalVar" });
  assertClose(t.subarray(1, 1 + L), loss.mainPerLevel.map((m) => m * loss.totalVar), {
    ...tol,
    label: "level errors",
  });
  assertClose([t[2 + L]], [loss.aux[0].denom], { ...tol, label: "aux denominator" });
  assertClose([t[1 + L] / t[2 + L]], [loss.aux[0].value], { ...tol, label: "aux term" });
  for (
    const b of [
      xBuf,
      xs,
      mean,
      std,
      encBuf,
      decBuf,
      bDecBuf,
      pre,
      layerTable,
      parentsBuf,
      idx,
      val,
      levelBounds,
      levels,
    ]
  ) b.destroy();
  for (const b of [deadBuf, auxIdx, auxVal, ehat, auxBounds, partials, blocks, terms]) b.destroy();
});
