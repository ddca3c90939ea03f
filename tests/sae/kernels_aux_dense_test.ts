/**
 * kernels/aux_dense.wgsl against TS twins: the plan's indirect arguments on both sides of the
 * capacity, the scatter of AuxK slots by dead rank, the transpose, the row sums and the merge into
 * the sparse gradients, on random inputs of sizes that are not multiples of the workgroup size;
 * and an indirect dispatch given zero workgroups by the plan leaves its output alone.
 */
import assert from "node:assert/strict";
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import { deadListTwin } from "./kernels_forward_twins.ts";
import {
  createStorage,
  readF32,
  readU32,
  uploadStorage,
  writeBuffer,
} from "../../lib/gpu/buffer.ts";
import { runOps } from "../../lib/sae/ops/grid.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import type { Dispatch } from "../../lib/gpu/kernel.ts";
import {
  createMatrixTexture,
  encodeMatrixTextureCopy,
  matrixTextureView,
} from "../../lib/sae/ops/matrix_texture.ts";
import {
  type DenseAux,
  denseAuxCapacity,
  gatherColsOp,
  gatherRowsOp,
  MAX_GATED,
  mergeOp,
  planOp,
  rowSumsOp,
  scatterCodesOp,
  scatterDenseOp,
  transposeOp,
} from "../../lib/sae/ops/aux_dense.ts";

const NO_SLOT = 0xffffffff;

/** The dense scratch at any sizes, its products on storage GEMMs (no texture is made). */
function scratch(
  gpu: Gpu,
  s: { B: number; d: number; n: number; base: number; end: number; dcap: number },
): DenseAux {
  const f32 = (len: number) => createStorage(gpu, Math.max(1, len) * 4, "t");
  return {
    ...s,
    args: gpu.device.createBuffer({
      size: (3 * MAX_GATED + 2) * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.INDIRECT | GPUBufferUsage.COPY_SRC,
    }),
    a: f32(s.dcap * s.B),
    p: f32(s.dcap * s.B),
    ut: f32(s.d * s.B),
    xt: f32(s.d * s.B),
    s: f32(s.dcap),
    gd: f32(s.dcap * s.d),
    ge: f32(s.dcap * s.d),
    zero: f32(Math.max(s.B, s.d, s.dcap)),
    wd: f32(s.dcap * s.d),
    uaux: f32(s.B * s.d),
    g: f32(s.B * s.dcap),
    argsF: gpu.device.createBuffer({
      size: (3 * MAX_GATED + 2) * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.INDIRECT | GPUBufferUsage.COPY_SRC,
    }),
    af: f32(s.B * s.dcap),
    wdt: f32(s.d * s.dcap),
    gemm: "storage",
  };
}

function deadMask(n: number, frac: number, seed: number): Uint32Array {
  const r = rng(seed);
  return new Uint32Array(n).map(() => (r() < frac ? 1 : 0));
}

Deno.test("aux_dense plan: zero workgroups for the path not taken, D and the choice", async () => {
  const gpu = await testGpu();
  assert.equal(denseAuxCapacity(70), 128);
  assert.equal(denseAuxCapacity(100000), 1536);
  // Group [base, end) of n: dead counts below, at and above the capacity, and none.
  const cases = [
    { n: 300, base: 20, end: 300, frac: 0.1, dcap: 64 },
    { n: 300, base: 20, end: 300, frac: 0.9, dcap: 64 },
    { n: 257, base: 0, end: 131, frac: 0.5, dcap: 128 },
    { n: 100, base: 3, end: 99, frac: 0, dcap: 64 },
  ];
  for (const { n, base, end, frac, dcap } of cases) {
    const mask = deadMask(n, frac, n + base + end);
    const D = mask.slice(base, end).reduce((s, v) => s + v, 0);
    const x = scratch(gpu, { B: 64, d: 64, n, base, end, dcap });
    const list = uploadStorage(gpu, deadListTwin(mask), "list");
    const gated: { dispatch: Dispatch; dense: boolean; rowsPerY?: number; colsPerX?: number }[] = [
      { dispatch: transposeOp(gpu, x, x.a, x.ut, 0), dense: true },
      { dispatch: rowSumsOp(gpu, x), dense: false },
      {
        dispatch: { ...rowSumsOp(gpu, x), workgroups: [3, 5, 2] as [number, number, number] },
        dense: true,
      },
      // A GEMM over the dead rows: y cut to ⌈D / 10⌉ (at most its 7).
      {
        dispatch: { ...rowSumsOp(gpu, x), workgroups: [2, 7] as [number, number] },
        dense: true,
        rowsPerY: 10,
      },
      // Over the dead columns: x cut to ⌈D / 9⌉ (at most its 11).
      {
        dispatch: { ...rowSumsOp(gpu, x), workgroups: [11, 4] as [number, number] },
        dense: true,
        colsPerX: 9,
      },
    ];
    await runOps(gpu, [planOp(gpu, x, list, gated)], "plan");
    const args = await readU32(gpu, x.args);
    const dense = D > 0 && D <= dcap;
    const label = `n=${n} [${base}, ${end}) D=${D} dcap=${dcap}`;
    gated.forEach((g, i) => {
      const [gx, gy = 1, gz = 1] = g.dispatch.workgroups;
      const y = g.rowsPerY ? Math.min(gy, Math.ceil(D / g.rowsPerY)) : gy;
      const cx = g.colsPerX ? Math.min(gx, Math.ceil(D / g.colsPerX)) : gx;
      const want = g.dense === dense ? [cx, y, gz] : [0, 0, 0];
      assert.deepEqual([...args.subarray(3 * i, 3 * i + 3)], want, `${label}: dispatch ${i}`);
      assert.deepEqual(g.dispatch.indirect, { buffer: x.args, offset: 12 * i });
    });
    for (let i = gated.length; i < MAX_GATED; i++) {
      assert.deepEqual([...args.subarray(3 * i, 3 * i + 3)], [0, 0, 0], `${label}: unused ${i}`);
    }
    assert.deepEqual([args[3 * MAX_GATED], args[3 * MAX_GATED + 1]], [D, dense ? 1 : 0], label);
    list.destroy();
  }
});

// transpose_tex4: from the rows of a matrix texture (software adapters), B % 4 == 0; at B = 2 052
// the rows read (2 052 .. 4 103) cross the texture's first layer of 4 096.
for (const [B, d, srcRow] of [[8, 64, 16], [2052, 128, 2052]]) {
  Deno.test(`transpose from a matrix texture matches the TS twin (B=${B} d=${d} from row ${srcRow})`, async () => {
    const gpu = await testGpu();
    const rows = srcRow + B + 3;
    const u = randn(rows * d, B + d);
    const uBuf = uploadStorage(gpu, u, "u");
    const tex = createMatrixTexture(gpu, rows, d, "u texture");
    const enc = gpu.device.createCommandEncoder();
    encodeMatrixTextureCopy(enc, uBuf, tex);
    gpu.device.queue.submit([enc.finish()]);
    const x = scratch(gpu, { B, d, n: 64, base: 0, end: 64, dcap: 4 });
    const op = transposeOp(gpu, x, uBuf, x.ut, srcRow * d, matrixTextureView(tex));
    assert.equal(op.kernel.entry, "transpose_tex4");
    await runOps(gpu, [op], "transpose from texture");
    const want = new Float32Array(d * B);
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < d; j++) want[j * B + b] = u[(srcRow + b) * d + j];
    }
    assert.deepEqual(await readF32(gpu, x.ut, d * B), want);
    for (const b of [x.args, x.argsF, x.a, x.p, x.ut, x.xt, x.s, x.gd, x.ge]) b.destroy();
    for (const b of [x.zero, x.wd, x.uaux, x.g, x.af, x.wdt]) b.destroy();
    uBuf.destroy();
    tex.texture.destroy();
  });
}

// gather_rows_tex4: the dead decoder rows from decW's matrix texture (software adapters), dead
// features on both sides of the texture's first layer of 4 096 rows, a group that starts past 0.
Deno.test("gathering the dead decoder rows from a matrix texture matches the TS twin", async () => {
  const gpu = await testGpu();
  const [n, d, base, end] = [4100, 64, 30, 4100];
  const mask = deadMask(n, 0.02, 77);
  for (const f of [31, 4095, 4096, 4099]) mask[f] = 1;
  const listHost = deadListTwin(mask);
  const group = [...listHost.subarray(1, 1 + listHost[0])].filter((f) => f >= base && f < end);
  const dcap = Math.ceil(group.length / 4) * 4 + 3;
  const decW = randn(n * d, 15);
  const decBuf = uploadStorage(gpu, decW, "decW");
  const tex = createMatrixTexture(gpu, n, d, "decW texture");
  const enc = gpu.device.createCommandEncoder();
  encodeMatrixTextureCopy(enc, decBuf, tex);
  gpu.device.queue.submit([enc.finish()]);
  const list = uploadStorage(gpu, listHost, "list");
  const x = scratch(gpu, { B: 4, d, n, base, end, dcap });
  writeBuffer(gpu, x.wd, new Float32Array(dcap * d).fill(-9)); // every element must be written
  const op = gatherRowsOp(gpu, x, { list, decW: decBuf, decTex: matrixTextureView(tex) });
  assert.equal(op.kernel.entry, "gather_rows_tex4");
  await runOps(gpu, [op], "gather rows from texture");
  const want = new Float32Array(dcap * d);
  group.forEach((f, r) => want.set(decW.subarray(f * d, (f + 1) * d), r * d));
  assert.deepEqual(await readF32(gpu, x.wd), want);
  for (const b of [x.args, x.argsF, x.a, x.p, x.ut, x.xt, x.s, x.gd, x.ge]) b.destroy();
  for (const b of [x.zero, x.wd, x.uaux, x.g, x.af, x.wdt, decBuf, list]) b.destroy();
  tex.texture.destroy();
});

Deno.test("aux_dense scatters, gathers, transpose, row sums and merge match their TS twins (odd sizes)", async () => {
  const gpu = await testGpu();
  const cases = [
    { B: 37, d: 13, n: 90, base: 11, end: 80, ka: 5, frac: 0.4, segBase: 7 },
    { B: 70, d: 66, n: 301, base: 0, end: 301, ka: 9, frac: 0.2, segBase: 0 },
    // d % 4 == 0: the merge four columns per invocation (merge4).
    { B: 20, d: 64, n: 150, base: 5, end: 140, ka: 6, frac: 0.3, segBase: 3 },
  ];
  for (const { B, d, n, base, end, ka, frac, segBase } of cases) {
    const r = rng(B + d + n);
    const mask = deadMask(n, frac, B * n);
    const listHost = deadListTwin(mask);
    const group = [...listHost.subarray(1, 1 + listHost[0])].filter((f) => f >= base && f < end);
    const rankOf = (f: number) => group.indexOf(f);
    const D = group.length;
    const dcap = Math.ceil(D / 4) * 4 + 3;
    const x = scratch(gpu, { B, d, n, base, end, dcap });
    const label = `B=${B} d=${d} n=${n} D=${D}`;
    // AuxK slots: distinct dead features of the group per row, some unused.
    const idx = new Uint32Array(B * ka).fill(NO_SLOT);
    const val = new Float32Array(B * ka);
    const dpre = new Float32Array(segBase + B * ka).map(() => r() - 0.5);
    for (let b = 0; b < B; b++) {
      const pick = [...group].sort(() => r() - 0.5).slice(0, Math.min(ka - 1, D));
      pick.forEach((f, s) => {
        idx[b * ka + s] = f;
        val[b * ka + s] = r() < 0.2 ? 0 : r();
      });
    }
    const list = uploadStorage(gpu, listHost, "list");
    const bufs = {
      idx: uploadStorage(gpu, idx, "idx"),
      val: uploadStorage(gpu, val, "val"),
      dpre: uploadStorage(gpu, dpre, "dpre"),
      list,
    };
    const u = randn(3 * B * d, B + 1);
    const uBuf = uploadStorage(gpu, u, "u");
    const srcOff = 2 * B * d;
    const bDec = randn(d, d + 2);
    const gradDec0 = randn(n * d, n + 3), gradEnc0 = randn(n * d, n + 4), sum0 = randn(n, n + 5);
    const gd = randn(dcap * d, 11), ge = randn(dcap * d, 12);
    const out = {
      bDec: uploadStorage(gpu, bDec, "bDec"),
      gradDec: uploadStorage(gpu, gradDec0, "gradDec"),
      gradEnc: uploadStorage(gpu, gradEnc0, "gradEnc"),
      sum: uploadStorage(gpu, sum0, "sum"),
    };
    writeBuffer(gpu, x.gd, gd);
    writeBuffer(gpu, x.ge, ge);
    const enc = gpu.device.createCommandEncoder();
    enc.clearBuffer(x.a);
    enc.clearBuffer(x.p);
    gpu.device.queue.submit([enc.finish()]);
    await runOps(gpu, [
      scatterDenseOp(gpu, x, bufs, { ka, segBase }),
      transposeOp(gpu, x, uBuf, x.ut, srcOff),
      rowSumsOp(gpu, x),
      mergeOp(gpu, x, { list, ...out }),
    ], "aux dense");
    // Twins.
    const A = new Float32Array(dcap * B), P = new Float32Array(dcap * B);
    for (let i = 0; i < B * ka; i++) {
      if (idx[i] === NO_SLOT) continue;
      const rr = rankOf(idx[i]), b = Math.floor(i / ka);
      A[rr * B + b] = val[i];
      P[rr * B + b] = dpre[segBase + i];
    }
    const UT = new Float32Array(d * B);
    for (let b = 0; b < B; b++) for (let j = 0; j < d; j++) UT[j * B + b] = u[srcOff + b * d + j];
    const S = new Float32Array(dcap);
    for (let rr = 0; rr < dcap; rr++) {
      let acc = 0;
      for (let b = 0; b < B; b++) acc = Math.fround(acc + P[rr * B + b]);
      S[rr] = acc;
    }
    const gradDec = gradDec0.slice(), gradEnc = gradEnc0.slice(), sum = sum0.slice();
    group.forEach((f, rr) => {
      for (let j = 0; j < d; j++) {
        gradDec[f * d + j] = Math.fround(gradDec[f * d + j] + gd[rr * d + j]);
        gradEnc[f * d + j] = Math.fround(
          gradEnc[f * d + j] + Math.fround(ge[rr * d + j] - Math.fround(S[rr] * bDec[j])),
        );
      }
      sum[f] = Math.fround(sum[f] + S[rr]);
    });
    assert.deepEqual(await readF32(gpu, x.a), A, `${label}: A`);
    assert.deepEqual(await readF32(gpu, x.p), P, `${label}: P`);
    // The dot products from G [B, dcap] instead (0 where val ≤ 0), and the dead decoder rows.
    const G = randn(B * dcap, 13);
    const gBuf = uploadStorage(gpu, G, "G");
    const decW = randn(n * d, 14);
    const decBuf = uploadStorage(gpu, decW, "decW");
    const clear = gpu.device.createCommandEncoder();
    clear.clearBuffer(x.p);
    clear.clearBuffer(x.af);
    gpu.device.queue.submit([clear.finish()]);
    // The forward's A_f [B, dcap] and W_dᵀ [d, dcap] (poisoned first: every element is written).
    writeBuffer(gpu, x.wdt, new Float32Array(d * dcap).fill(-9));
    await runOps(gpu, [
      scatterDenseOp(gpu, x, { ...bufs, dpre: gBuf }, { ka, segBase, fromG: true }),
      gatherRowsOp(gpu, x, { list, decW: decBuf }),
      scatterCodesOp(gpu, x, bufs, { ka }),
      gatherColsOp(gpu, x, { list, decW: decBuf }),
    ], "aux dense from G");
    const AF = new Float32Array(B * dcap), WDT = new Float32Array(d * dcap);
    for (let i = 0; i < B * ka; i++) {
      if (idx[i] !== NO_SLOT) AF[Math.floor(i / ka) * dcap + rankOf(idx[i])] = val[i];
    }
    group.forEach((f, rr) => {
      for (let j = 0; j < d; j++) WDT[j * dcap + rr] = decW[f * d + j];
    });
    assert.deepEqual(await readF32(gpu, x.af), AF, `${label}: A_f`);
    assert.deepEqual(await readF32(gpu, x.wdt), WDT, `${label}: W_dᵀ`);
    const PG = new Float32Array(dcap * B), WD = new Float32Array(dcap * d);
    for (let i = 0; i < B * ka; i++) {
      if (idx[i] === NO_SLOT) continue;
      const rr = rankOf(idx[i]), b = Math.floor(i / ka);
      PG[rr * B + b] = val[i] > 0 ? G[b * dcap + rr] : 0;
    }
    group.forEach((f, rr) => WD.set(decW.subarray(f * d, (f + 1) * d), rr * d));
    assert.deepEqual(await readF32(gpu, x.p), PG, `${label}: P from G`);
    assert.deepEqual(await readF32(gpu, x.wd), WD, `${label}: W_d`);
    gBuf.destroy();
    decBuf.destroy();
    assert.deepEqual(await readF32(gpu, x.ut), UT, `${label}: Uᵀ`);
    assertClose(await readF32(gpu, x.s), S, { rtol: 1e-6, atol: 1e-6, label: `${label}: s` });
    const tol = { rtol: 1e-6, atol: 1e-6 };
    assertClose(await readF32(gpu, out.gradDec), gradDec, { ...tol, label: `${label}: gradDec` });
    assertClose(await readF32(gpu, out.gradEnc), gradEnc, { ...tol, label: `${label}: gradEnc` });
    assertClose(await readF32(gpu, out.sum), sum, { ...tol, label: `${label}: sum` });
    for (const b of [...Object.values(bufs), ...Object.values(out), uBuf]) b.destroy();
  }
});

Deno.test("an indirect dispatch given zero workgroups by the plan leaves its output alone", async () => {
  const gpu = await testGpu();
  const n = 100;
  const x = scratch(gpu, { B: 64, d: 3, n, base: 0, end: n, dcap: 64 });
  // Every feature dead: D = 100 > dcap, so the dense side is off and the sparse side on.
  const list = uploadStorage(gpu, deadListTwin(new Uint32Array(n).fill(1)), "list");
  const src = uploadStorage(gpu, new Float32Array(64 * 3).map((_, i) => i + 1), "src");
  const off = transposeOp(gpu, x, src, x.ut, 0), on = transposeOp(gpu, x, src, x.xt, 0);
  await runOps(gpu, [
    planOp(gpu, x, list, [{ dispatch: off, dense: true }, { dispatch: on, dense: false }]),
    off,
    on,
  ], "gated transposes");
  assert.ok(
    (await readF32(gpu, x.ut)).every((v) => v === 0),
    "the dense-side transpose did not run",
  );
  assert.equal(
    (await readF32(gpu, x.xt))[1],
    4,
    "the sparse-side transpose ran: xsᵀ[0, 1] = src[1, 0]",
  );
  list.destroy();
  src.destroy();
});
