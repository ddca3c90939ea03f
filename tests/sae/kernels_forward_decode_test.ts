import assert from "node:assert/strict";
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import {
  deadListTwin,
  decodeLevelsTwin,
  groupSlotsTwin,
  NO_SLOT,
  sumSqTwin,
} from "./kernels_forward_twins.ts";
import { deadListOp } from "../../lib/sae/ops/topk.ts";
import { createStorage, readF32, readU32, uploadStorage } from "../../lib/gpu/buffer.ts";
import { runOps } from "../../lib/sae/ops/grid.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import {
  createLevelBounds,
  type LevelPlan,
  matryoshkaLevels,
  singleLevel,
  sparseDecodeOp,
  treeLevels,
} from "../../lib/sae/ops/sparse_decode.ts";
import {
  lossBlocksLength,
  lossTermCount,
  lossTermsOp,
  type LossTextures,
} from "../../lib/sae/ops/loss.ts";
import {
  blockedTextureDecodeOp,
  slotsInFours,
  textureDecodeOp,
} from "../../lib/sae/ops/sparse_decode.ts";
import { groupSlotsOp, MAX_SLOT_BLOCKS, slotBlocks } from "../../lib/sae/ops/slot_blocks.ts";
import {
  createMatrixTexture,
  encodeMatrixTextureCopy,
  matrixTextureView,
  TEX_ROWS,
} from "../../lib/sae/ops/matrix_texture.ts";

/** The decoded levels in `out` equal decodeLevelsTwin's within 1e-5. */
async function assertDecodeTwin(
  gpu: Gpu,
  out: GPUBuffer,
  c: {
    idx: Uint32Array;
    val: Float32Array;
    B: number;
    K: number;
    decW: Float32Array;
    bDec: Float32Array;
    bias: boolean;
    d: number;
    plan: LevelPlan;
  },
  opts: { label: string },
) {
  const want = decodeLevelsTwin(
    c.idx,
    c.val,
    c.B,
    c.K,
    c.decW,
    c.bias ? c.bDec : null,
    c.d,
    c.plan.mode,
    c.plan.bounds,
  );
  const got = await readF32(gpu, out, c.plan.bounds.length * c.B * c.d);
  assertClose(got, want, { atol: 1e-5, rtol: 1e-5, label: opts.label });
}

Deno.test("texture decode matches the TS twin (tree levels, AuxK, matryoshka, decW over two texture layers)", async () => {
  const gpu = await testGpu();
  const wgsl = await Deno.readTextFile(
    new URL("../../kernels/sparse_decode.wgsl", import.meta.url),
  );
  assert.ok(wgsl.includes(`const TEX_ROWS: u32 = ${TEX_ROWS}u;`), "TEX_ROWS in WGSL and TS agree");
  // fours: the slots go as vec4s (decode_slots16_tex4) — levels of whole groups of four slots.
  const cases = [
    { B: 9, d: 64, n: 4100, K: 10, plan: treeLevels([5, 3, 2]), bias: true, fours: false },
    { B: 5, d: 128, n: 77, K: 33, plan: singleLevel(33), bias: false, fours: false },
    { B: 7, d: 64, n: 4100, K: 12, plan: treeLevels([4, 8]), bias: true, fours: true },
    { B: 6, d: 192, n: 300, K: 32, plan: singleLevel(32), bias: false, fours: true },
    // Matryoshka prefixes (levels by feature; decode_levels16_tex); in the second the last prefix
    // ends short of n, so the features past it are in no level.
    {
      B: 9,
      d: 64,
      n: 4100,
      K: 12,
      plan: matryoshkaLevels([10, 30, 4060]),
      bias: true,
      fours: false,
    },
    {
      B: 5,
      d: 128,
      n: 300,
      K: 33,
      plan: matryoshkaLevels([40, 60, 60, 100, 10]),
      bias: false,
      fours: false,
    },
    // The most levels the kernel keeps (MAX_LEVELS = 8) and one: its per-level sums are compiled
    // for the plan's L.
    {
      B: 6,
      d: 64,
      n: 300,
      K: 17,
      plan: matryoshkaLevels([3, 5, 8, 13, 21, 34, 55, 161]),
      bias: true,
      fours: false,
    },
    { B: 4, d: 64, n: 200, K: 9, plan: matryoshkaLevels([200]), bias: true, fours: false },
  ];
  for (const { B, d, n, K, plan, bias, fours } of cases) {
    assert.equal(slotsInFours(K, plan), fours, `K=${K} bounds ${plan.bounds}`);
    const { idx, val } = randomCodes(B, K, n, B + K + d);
    for (let b = 0; b < B; b++) idx[b * K] = n - 1; // the second texture layer
    const decW = randn(n * d, n + d), bDec = randn(d, 2 * d);
    const L = plan.bounds.length;
    const decBuf = uploadStorage(gpu, decW, "decW");
    const decT = createMatrixTexture(gpu, n, d, "decW texture");
    const bufs = {
      idx: uploadStorage(gpu, idx, "idx"),
      val: uploadStorage(gpu, val, "val"),
      bDec: uploadStorage(gpu, bDec, "bDec"),
      levelBounds: createLevelBounds(gpu, plan),
      out: createStorage(gpu, L * B * d * 4, "levels"),
    };
    const encoder = gpu.device.createCommandEncoder();
    encodeMatrixTextureCopy(encoder, decBuf, decT);
    gpu.device.queue.submit([encoder.finish()]);
    const dispatches = textureDecodeOp(gpu, decT, bufs, { B, d, K, plan, withBias: bias });
    assert.equal(dispatches.length, 1);
    await runOps(gpu, dispatches, "texture decode");
    await assertDecodeTwin(gpu, bufs.out, { idx, val, B, K, decW, bDec, bias, d, plan }, {
      label: `texture B=${B} d=${d} K=${K}`,
    });
    for (const b of [...Object.values(bufs), decBuf]) b.destroy();
    decT.texture.destroy();
  }
});

Deno.test("dead_list and group_slots: ranks and regrouping by block of dead features match the TS twins", async () => {
  const gpu = await testGpu();
  const wgsl = await Deno.readTextFile(new URL("../../kernels/slot_blocks.wgsl", import.meta.url));
  assert.ok(
    wgsl.includes(`const MAX_BLOCKS: u32 = ${MAX_SLOT_BLOCKS}u;`),
    "MAX_BLOCKS in WGSL and TS",
  );
  // (B, K, group [base, base + count) of n features, dead fraction, block bytes at d = 64): odd
  // sizes, one block, a partial last block, a nonzero base (a tree layer) with dead features
  // below it, few dead (slots only in the first blocks), and more rows than one workgroup.
  const cases = [
    { B: 5, K: 7, base: 0, count: 53, n: 53, dead: 0.5, bytes: 8 * 256 },
    { B: 70, K: 33, base: 20, count: 100, n: 131, dead: 0.7, bytes: 16 * 256 },
    { B: 3, K: 12, base: 0, count: 30, n: 30, dead: 1, bytes: 64 * 256 },
    { B: 9, K: 256, base: 7, count: 4100, n: 4111, dead: 0.9, bytes: 1 * 256 },
    { B: 8, K: 20, base: 0, count: 1000, n: 1000, dead: 0.05, bytes: 16 * 256 },
  ];
  for (const { B, K, base, count, n, dead, bytes } of cases) {
    const blocks = slotBlocks(count, 64, base, bytes);
    assert.ok(
      blocks.nb <= MAX_SLOT_BLOCKS && blocks.nb * 2 ** blocks.shift >= count,
      "blocks cover the group",
    );
    const r = rng(B + K + count);
    const mask = new Uint32Array(n).map(() => (r() < dead ? 1 : 0));
    const wantList = deadListTwin(mask);
    const inGroup = [...wantList.subarray(1, 1 + wantList[0])].filter((f) =>
      f >= base && f < base + count
    );
    assert.ok(inGroup.length > 0, "the group has dead features");
    // AuxK slots hold dead features of the group only.
    const { idx, val } = randomCodes(B, K, inGroup.length, B + K + count);
    for (let i = 0; i < idx.length; i++) if (idx[i] !== NO_SLOT) idx[i] = inGroup[idx[i]];
    const deadBuf = uploadStorage(gpu, mask, "dead");
    const list = createStorage(gpu, (1 + 2 * n) * 4, "dead list");
    await runOps(gpu, deadListOp(gpu, deadBuf, list, n), "dead list");
    const label = `B=${B} K=${K} n=${n} nb=${blocks.nb}`;
    const gotList = await readU32(gpu, list);
    assert.deepEqual(gotList.subarray(0, 1 + gotList[0]), wantList.subarray(0, 1 + wantList[0]));
    assert.deepEqual(gotList.subarray(1 + n), wantList.subarray(1 + n), `${label}: ranks`);
    const bufs = {
      idx: uploadStorage(gpu, idx, "idx"),
      val: uploadStorage(gpu, val, "val"),
      idxOut: createStorage(gpu, B * K * 4, "idx out"),
      valOut: createStorage(gpu, B * K * 4, "val out"),
      starts: createStorage(gpu, B * (blocks.nb + 1) * 4, "starts"),
      list,
    };
    await runOps(gpu, groupSlotsOp(gpu, bufs, { B, K, n, blocks }), "group slots");
    const rank = wantList.subarray(1 + n);
    const want = groupSlotsTwin(idx, val, B, K, rank, base, blocks.shift, blocks.nb);
    assert.deepEqual(await readU32(gpu, bufs.idxOut), want.idx, `${label}: idx`);
    assert.deepEqual(await readF32(gpu, bufs.valOut), want.val, `${label}: val`);
    const starts = await readU32(gpu, bufs.starts);
    assert.deepEqual(starts, want.starts, `${label}: starts`);
    // Blocks past the group's dead features hold no slots (their decode dispatches skip).
    const used = Math.ceil(inGroup.length / 2 ** blocks.shift);
    for (let b = 0; b < B; b++) {
      for (let j = used; j < blocks.nb; j++) {
        const o = b * (blocks.nb + 1) + j;
        assert.equal(starts[o + 1] - starts[o], 0, `${label}: row ${b} block ${j} is empty`);
      }
    }
    for (const b of [...Object.values(bufs), deadBuf]) b.destroy();
  }
});

Deno.test("blocked texture decode of regrouped rows matches the TS twin (AuxK, two texture layers)", async () => {
  const gpu = await testGpu();
  const cases = [
    { B: 9, d: 64, n: 4100, K: 10, base: 0, bytes: 512 * 256, bias: false },
    { B: 5, d: 128, n: 300, K: 33, base: 40, bytes: 16 * 512, bias: true },
    { B: 6, d: 192, n: 77, K: 32, base: 0, bytes: 1 << 20, bias: false },
  ];
  for (const { B, d, n, K, base, bytes, bias } of cases) {
    const blocks = slotBlocks(n - base, d, base, bytes);
    const { idx, val } = randomCodes(B, K, n - base, B + K + d);
    for (let i = 0; i < idx.length; i++) if (idx[i] !== NO_SLOT) idx[i] += base;
    for (let b = 0; b < B; b += 2) idx[b * K] = n - 1; // the last block (second layer when n > 4096)
    // Every feature dead: rank = feature index.
    const rank = new Uint32Array(n).map((_, f) => f);
    const grouped = groupSlotsTwin(idx, val, B, K, rank, base, blocks.shift, blocks.nb);
    const decW = randn(n * d, n + d), bDec = randn(d, 2 * d);
    const decBuf = uploadStorage(gpu, decW, "decW");
    const decT = createMatrixTexture(gpu, n, d, "decW texture");
    const bufs = {
      idx: uploadStorage(gpu, grouped.idx, "idx"),
      val: uploadStorage(gpu, grouped.val, "val"),
      bDec: uploadStorage(gpu, bDec, "bDec"),
      starts: uploadStorage(gpu, grouped.starts, "starts"),
      out: createStorage(gpu, B * d * 4, "out"),
    };
    const encoder = gpu.device.createCommandEncoder();
    encodeMatrixTextureCopy(encoder, decBuf, decT);
    gpu.device.queue.submit([encoder.finish()]);
    const dispatches = blockedTextureDecodeOp(gpu, decT, bufs, { B, d, K, withBias: bias, blocks });
    assert.equal(dispatches.length, blocks.nb, "one dispatch per block");
    const sizes = { B, d, K, withBias: bias, blocks };
    assert.equal(blockedTextureDecodeOp(gpu, decT, bufs, { ...sizes, upTo: 1 }).length, 1, "upTo");
    assert.throws(() => blockedTextureDecodeOp(gpu, decT, bufs, { ...sizes, upTo: 0 }), /upTo = 0/);
    await runOps(gpu, dispatches, "blocked decode");
    // The regrouped rows decode to the original rows' sums, up to the order of the terms.
    const want = decodeLevelsTwin(idx, val, B, K, decW, bias ? bDec : null, d, "slot", [K]);
    assertClose(await readF32(gpu, bufs.out, B * d), want, {
      atol: 1e-5,
      rtol: 1e-5,
      label: `blocked B=${B} d=${d} K=${K} nb=${blocks.nb}`,
    });
    for (const b of [...Object.values(bufs), decBuf]) b.destroy();
    decT.texture.destroy();
  }
});

/** Random codes: K slots per row, some unused, some zero, features drawn from [0, n). */
function randomCodes(B: number, K: number, n: number, seed: number) {
  const r = rng(seed);
  const idx = new Uint32Array(B * K), val = new Float32Array(B * K);
  for (let i = 0; i < B * K; i++) {
    const u = r();
    idx[i] = u < 0.1 ? NO_SLOT : Math.floor(r() * n);
    val[i] = u < 0.1 || u > 0.9 ? 0 : r() * 2;
  }
  return { idx, val };
}

Deno.test("sparse decode levels match the TS twin (topk, tree, matryoshka, AuxK; every entry point)", async () => {
  const device = await testGpu();
  const cases: { B: number; d: number; n: number; K: number; plan: LevelPlan; bias: boolean }[] = [
    { B: 9, d: 48, n: 40, K: 5, plan: singleLevel(5), bias: true },
    { B: 70, d: 63, n: 100, K: 10, plan: treeLevels([5, 3, 2]), bias: true },
    { B: 5, d: 65, n: 90, K: 8, plan: matryoshkaLevels([10, 30, 50]), bias: true },
    { B: 3, d: 1, n: 7, K: 7, plan: singleLevel(7), bias: false },
    {
      B: 6,
      d: 64,
      n: 300,
      K: 300,
      plan: matryoshkaLevels([10, 20, 30, 40, 50, 60, 40, 50]),
      bias: true,
    },
    { B: 7, d: 52, n: 50, K: 9, plan: treeLevels([1, 2, 3, 3]), bias: false },
    { B: 2, d: 1028, n: 20, K: 300, plan: singleLevel(300), bias: true },
  ];
  // Software adapters' column layout (contiguous per invocation) and GPUs' (interleaved).
  for (const isFallback of [true, false]) {
    const gpu = { ...device, isFallback };
    for (const { B, d, n, K, plan, bias } of cases) {
      const { idx, val } = randomCodes(B, K, n, B * K + d);
      const decW = randn(n * d, n + d);
      const bDec = randn(d, 3 * d);
      const L = plan.bounds.length;
      const bufs = {
        idx: uploadStorage(gpu, idx, "idx"),
        val: uploadStorage(gpu, val, "val"),
        decW: uploadStorage(gpu, decW, "decW"),
        bDec: uploadStorage(gpu, bDec, "bDec"),
        levelBounds: createLevelBounds(gpu, plan),
        out: createStorage(gpu, L * B * d * 4, "levels"),
      };
      await runOps(gpu, sparseDecodeOp(gpu, bufs, { B, d, K, plan, withBias: bias }), "decode");
      await assertDecodeTwin(gpu, bufs.out, { idx, val, B, K, decW, bDec, bias, d, plan }, {
        label: `B=${B} d=${d} K=${K} ${plan.mode} ${plan.bounds}${
          isFallback ? "" : " (GPU layout)"
        }`,
      });
      for (const b of Object.values(bufs)) b.destroy();
    }
  }
});

Deno.test("loss term sums match the TS twin and are bitwise reproducible", async () => {
  const gpu = await testGpu();
  // d % 4 == 0 reads four columns per invocation (column_block_sums4; 260: two workgroups, the
  // second partial), else one. d = 64: also through the inputs' matrix textures (LOSS_TEX), the
  // 2 × 2 100 level rows crossing the textures' first layer of 4 096. A Tree SAE's terms: four
  // levels with an AuxK entry each; and 8 of both, the most one dispatch takes (25 terms in all).
  const cases: [number, number, number, number[]][] = [
    [37, 48, 1, [0, 0]],
    [130, 63, 3, [0, 2]],
    [70, 260, 2, [0, 1]],
    [2100, 64, 2, [0, 1]],
    [90, 64, 4, [0, 1, 2, 3]],
    [41, 36, 8, [0, 1, 2, 3, 4, 5, 6, 7]],
  ];
  for (const [B, d, L, auxLevels] of cases) {
    const xs = randn(B * d, B + d);
    const levels = randn(L * B * d, 2 * B + d).map((v, i) => 0.3 * v + xs[i % (B * d)]);
    const ehat = randn(B * d, 3 * B + d).map((v) => 0.2 * v);
    const T = lossTermCount(L, auxLevels.length);
    const xsBuf = uploadStorage(gpu, xs, "xs");
    const levelsBuf = uploadStorage(gpu, levels, "levels");
    const ehatBuf = uploadStorage(gpu, ehat, "ehat");
    const partials = createStorage(gpu, T * d * 4, "partials");
    const blocks = createStorage(gpu, lossBlocksLength(B, d, T) * 4, "loss blocks");
    const terms = createStorage(gpu, T * 4, "terms");
    const aux = auxLevels.map((level) => ({ ehat: ehatBuf, level }));
    const run = async (textures?: LossTextures) => {
      await runOps(
        gpu,
        lossTermsOp(gpu, {
          xs: xsBuf,
          levels: levelsBuf,
          aux,
          partials,
          blocks,
          terms,
          ...(textures ? { textures } : {}),
        }, { B, d, L }),
        "loss",
      );
      return await readF32(gpu, terms, T);
    };
    const got = await run();
    const want = [sumSqTwin(xs, null, B, d, true)];
    const level = (l: number) => levels.subarray(l * B * d, (l + 1) * B * d);
    for (let l = 0; l < L; l++) want.push(sumSqTwin(level(l), xs, B, d, false));
    for (const l of auxLevels) {
      const r = xs.map((v, i) => v - level(l)[i]);
      want.push(sumSqTwin(ehat, r, B, d, false));
      want.push(sumSqTwin(r, null, B, d, true));
    }
    assertClose(got, want, { atol: 1e-6, rtol: 1e-5, label: `terms B=${B} d=${d} L=${L}` });
    assert.deepEqual(await run(), got, "same inputs give bitwise the same sums");
    if (d % 64 === 0) {
      const mirrors = [[xsBuf, B], [levelsBuf, L * B], [ehatBuf, B]] as const;
      const tex = mirrors.map(([buf, rows]) => createMatrixTexture(gpu, rows, d, buf.label));
      const copies = gpu.device.createCommandEncoder();
      mirrors.forEach(([buf], i) => encodeMatrixTextureCopy(copies, buf, tex[i]));
      gpu.device.queue.submit([copies.finish()]);
      const [xsT, levelsT, ehatT] = tex.map(matrixTextureView);
      const viaTextures = await run({ xs: xsT, levels: levelsT, aux: aux.map(() => ehatT) });
      // The same operations in the same order: bitwise the buffers' sums.
      assert.deepEqual(viaTextures, got, `terms through textures B=${B} d=${d} L=${L}`);
      for (const t of tex) t.texture.destroy();
    }
    for (const b of [xsBuf, levelsBuf, ehatBuf, partials, blocks, terms]) b.destroy();
  }
  const one = createStorage(gpu, 16, "one");
  // Levels and AuxK entries share a dispatch of at most 16 terms.
  const aux = Array.from({ length: 7 }, () => ({ ehat: one, level: 0 }));
  const tooMany = { xs: one, levels: one, aux, partials: one, blocks: one, terms: one };
  assert.throws(() => lossTermsOp(gpu, tooMany, { B: 1, d: 4, L: 10 }), /at most 16 of both/);
  lossTermsOp(gpu, tooMany, { B: 1, d: 4, L: 9 });
  one.destroy();
});
