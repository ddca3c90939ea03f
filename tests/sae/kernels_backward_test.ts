/**
 * Sparse backward kernels (kernels/sparse_backward.wgsl) against a dense reference built here:
 * dense [B, n] code and dpre matrices, dense products — the thing the sparse path avoids.
 * Shapes are odd, features appear 0, 1 or many times, k = 1 and k = n are covered.
 */
import {
  createMatrixTexture,
  encodeMatrixTextureCopy,
  matrixTextureSupported,
  matrixTextureView,
} from "../../lib/sae/ops/matrix_texture.ts";
import assert from "node:assert/strict";
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import { createStorage, readF32, readU32, uploadStorage } from "../../lib/gpu/buffer.ts";
import {
  type BackwardAuxGroup,
  type DpreLayout,
  SparseBackward,
} from "../../lib/sae/ops/backward.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import { backward } from "../../lib/sae/reference/ops.ts";
import { featureLayers } from "../../lib/sae/config.ts";

const EMPTY = 0xffffffff;

interface Case {
  B: number;
  d: number;
  /** Layer sizes (levels); n = their sum. */
  layers: number[];
  k: number;
  aux: { k: number; level: number; alpha: number; start: number; end: number }[];
  seed: number;
  /** The batch is large enough that every feature has an entry. */
  everyFeature?: boolean;
}

/** Codes [B, K]: distinct features per row drawn with a skew (feature `hot` on every row). */
function makeCodes(B: number, K: number, lo: number, hi: number, seed: number, hot: number) {
  const r = rng(seed);
  const idx = new Uint32Array(B * K).fill(EMPTY);
  const val = new Float32Array(B * K);
  const span = hi - lo;
  for (let b = 0; b < B; b++) {
    const used = new Set<number>();
    for (let s = 0; s < K; s++) {
      let f: number;
      if (s === 0 && hot >= lo && hot < hi) f = hot;
      else if (K === span) f = lo + ((s + b) % span); // k = n: every feature on every row
      else {
        // Skewed draw: square of a uniform favours low indices; upper features stay rare/unused.
        do f = lo + Math.floor(r() * r() * span); while (used.has(f));
      }
      if (used.has(f)) continue;
      used.add(f);
      const u = r();
      if (u < 0.08) continue; // unused slot
      idx[b * K + s] = f;
      val[b * K + s] = u < 0.16 ? 0 : r() * 2; // some selected-but-inactive slots (val 0)
    }
  }
  return { idx, val };
}

function layerOf(f: number, ends: number[]): number {
  let l = 0;
  while (l + 1 < ends.length && f >= ends[l]) l++;
  return l;
}

/** The dense reference: every gradient from dense [B, n] matrices, in float64. */
function denseReference(c: Case, data: ReturnType<typeof makeData>) {
  const { B, d } = c;
  const n = c.layers.reduce((a, b) => a + b, 0);
  const L = c.layers.length;
  const ends: number[] = [];
  c.layers.reduce((a, s) => (ends.push(a + s), a + s), 0);
  const { xs, recon, encW, decW, bDec, scal } = data;
  // Upstream gradient per source: suffix sums of level gradients, then aux gradients.
  const U: Float64Array[] = [];
  for (let l = 0; l < L; l++) U.push(new Float64Array(B * d));
  for (let l = L - 1; l >= 0; l--) {
    for (let t = 0; t < B * d; t++) {
      U[l][t] = 2 * (recon[l * B * d + t] - xs[t]) / scal[0] + (l + 1 < L ? U[l + 1][t] : 0);
    }
  }
  c.aux.forEach((g, a) => {
    const u = new Float64Array(B * d);
    for (let t = 0; t < B * d; t++) {
      const r = xs[t] - recon[g.level * B * d + t];
      u[t] = g.alpha * 2 * (data.aux[a].ehat[t] - r) / scal[1 + a];
    }
    U.push(u);
  });
  // Dense code matrices per source: V[s][b, f] and Dpre[s][b, f].
  const sets = [{ idx: data.idx, val: data.val, K: c.k, src: -1 }];
  c.aux.forEach((g, a) =>
    sets.push({ idx: data.aux[a].idx, val: data.aux[a].val, K: g.k, src: L + a })
  );
  const gradDec = new Float64Array(n * d);
  const gradEnc = new Float64Array(n * d);
  const gradB = new Float64Array(d);
  for (const set of sets) {
    const V = new Float64Array(B * n);
    const Src = new Int32Array(B * n);
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < set.K; s++) {
        const f = set.idx[b * set.K + s];
        if (f === EMPTY) continue;
        V[b * n + f] = set.val[b * set.K + s];
        Src[b * n + f] = set.src < 0 ? layerOf(f, ends) : set.src;
      }
    }
    const Dpre = new Float64Array(B * n);
    for (let b = 0; b < B; b++) {
      for (let f = 0; f < n; f++) {
        if (!(V[b * n + f] > 0)) continue;
        const u = U[Src[b * n + f]];
        let dot = 0;
        for (let j = 0; j < d; j++) dot += u[b * d + j] * decW[f * d + j];
        Dpre[b * n + f] = dot;
      }
    }
    for (let f = 0; f < n; f++) {
      for (let b = 0; b < B; b++) {
        const v = V[b * n + f];
        const dp = Dpre[b * n + f];
        if (v === 0 && dp === 0) continue;
        const u = U[Src[b * n + f]];
        for (let j = 0; j < d; j++) {
          gradDec[f * d + j] += v * u[b * d + j];
          gradEnc[f * d + j] += dp * (xs[b * d + j] - bDec[j]);
          gradB[j] -= dp * encW[f * d + j];
        }
      }
    }
  }
  for (let b = 0; b < B; b++) for (let j = 0; j < d; j++) gradB[j] += U[0][b * d + j];
  return { gradDec, gradEnc, gradB };
}

function makeData(c: Case) {
  const { B, d } = c;
  const n = c.layers.reduce((a, b) => a + b, 0);
  const L = c.layers.length;
  const s = c.seed * 101;
  const ends: number[] = [];
  c.layers.reduce((a, x) => (ends.push(a + x), a + x), 0);
  // Main codes: per level block of slots, like a tree (layer-major); one block for L = 1.
  const idx = new Uint32Array(B * c.k).fill(EMPTY);
  const val = new Float32Array(B * c.k);
  const kPer = L === 1 ? [c.k] : c.layers.map((_, l) => (l < L - 1 ? Math.floor(c.k / L) : 0));
  kPer[L - 1] = c.k - kPer.slice(0, L - 1).reduce((a, b) => a + b, 0);
  let off = 0;
  for (let l = 0; l < L; l++) {
    const lo = l === 0 ? 0 : ends[l - 1];
    const part = makeCodes(B, kPer[l], lo, ends[l], s + l, lo + 1);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < kPer[l]; t++) {
        idx[b * c.k + off + t] = part.idx[b * kPer[l] + t];
        val[b * c.k + off + t] = part.val[b * kPer[l] + t];
      }
    }
    off += kPer[l];
  }
  const aux = c.aux.map((g, a) => ({
    ...makeCodes(B, g.k, g.start, g.end, s + 50 + a, g.end - 1),
    ehat: randn(B * d, s + 60 + a),
  }));
  const scal = new Float32Array([B * d * 0.9, ...c.aux.map((_, a) => B * d * (0.5 + a))]);
  return {
    xs: randn(B * d, s + 1),
    recon: randn(L * B * d, s + 2),
    encW: randn(n * d, s + 3),
    decW: randn(n * d, s + 4),
    bDec: randn(d, s + 5),
    scal,
    idx,
    val,
    aux,
  };
}

async function runGpu(
  gpu: Gpu,
  c: Case,
  data: ReturnType<typeof makeData>,
  dpre: DpreLayout = "lanes",
  textures = false,
  spread?: number,
) {
  const { B, d } = c;
  const n = c.layers.reduce((a, b) => a + b, 0);
  const ends: number[] = [];
  c.layers.reduce((a, x) => (ends.push(a + x), a + x), 0);
  const aux: BackwardAuxGroup[] = c.aux.map((g, a) => ({
    k: g.k,
    level: g.level,
    alpha: g.alpha,
    denomIndex: 1 + a,
  }));
  const plan = await SparseBackward.create(gpu, {
    B,
    d,
    n,
    levelEnds: ends,
    k: c.k,
    aux,
    totalVarIndex: 0,
    dpre,
    textures,
    spread,
  });
  const up = (x: Float32Array | Uint32Array, label: string) => uploadStorage(gpu, x, label);
  const bufs = {
    xs: up(data.xs, "xs"),
    recon: up(data.recon, "recon"),
    scal: up(data.scal, "scal"),
    idx: up(data.idx, "idx"),
    val: up(data.val, "val"),
    aux: data.aux.map((a) => ({
      idx: up(a.idx, "aidx"),
      val: up(a.val, "aval"),
      ehat: up(a.ehat, "ehat"),
    })),
    encW: up(data.encW, "encW"),
    decW: up(data.decW, "decW"),
    bDec: up(data.bDec, "bDec"),
    gradEnc: createStorage(gpu, n * d * 4, "gradEnc"),
    gradDec: createStorage(gpu, n * d * 4, "gradDec"),
    gradB: createStorage(gpu, d * 4, "gradB"),
  };
  const encoder = gpu.device.createCommandEncoder();
  // With textures: decW, encW and xs mirrored as the engine's forward leaves them.
  const tex = textures
    ? {
      dec: createMatrixTexture(gpu, n, d, "decW texture"),
      enc: createMatrixTexture(gpu, n, d, "encW texture"),
      xs: createMatrixTexture(gpu, B, d, "xs"),
    }
    : undefined;
  if (tex) {
    encodeMatrixTextureCopy(encoder, bufs.decW, tex.dec);
    encodeMatrixTextureCopy(encoder, bufs.encW, tex.enc);
    encodeMatrixTextureCopy(encoder, bufs.xs, tex.xs);
  }
  plan.encode(encoder, {
    ...bufs,
    decTex: tex && matrixTextureView(tex.dec),
    xsTex: tex && matrixTextureView(tex.xs),
    encTex: tex && matrixTextureView(tex.enc),
  });
  gpu.device.queue.submit([encoder.finish()]);
  const out = {
    gradDec: await readF32(gpu, bufs.gradDec),
    gradEnc: await readF32(gpu, bufs.gradEnc),
    gradB: await readF32(gpu, bufs.gradB),
    start: await readU32(gpu, plan.scratch.start),
    key: await readU32(gpu, plan.scratch.key),
  };
  plan.destroy();
  tex?.dec.texture.destroy();
  tex?.xs.texture.destroy();
  tex?.enc.texture.destroy();
  for (const b of Object.values(bufs)) if (b instanceof GPUBuffer) b.destroy();
  for (const a of bufs.aux) for (const b of Object.values(a)) b.destroy();
  return out;
}

/** Scale-aware comparison: tolerance relative to the largest magnitude of the expected array. */
function close(got: Float32Array, want: Float64Array, label: string) {
  let max = 0;
  for (const v of want) max = Math.max(max, Math.abs(v));
  assertClose(got, want, { atol: 2e-5 * max + 1e-7, rtol: 1e-4, label });
}

const CASES: Case[] = [
  // TopK-like, odd sizes, one aux group over the whole dictionary.
  {
    B: 37,
    d: 45,
    layers: [53],
    k: 5,
    aux: [{ k: 7, level: 0, alpha: 1 / 32, start: 0, end: 53 }],
    seed: 1,
  },
  // k = 1, no aux.
  { B: 70, d: 33, layers: [29], k: 1, aux: [], seed: 2 },
  // k = n: every feature on every row (many entries per feature), wide rows (d % 4 = 0: vec4 path).
  {
    B: 67,
    d: 132,
    layers: [7],
    k: 7,
    aux: [{ k: 3, level: 0, alpha: 0.5, start: 0, end: 7 }],
    seed: 3,
  },
  // 3-level tree: per-layer slot blocks, two aux groups on their own levels.
  {
    B: 41,
    d: 39,
    layers: [11, 19, 31],
    k: 9,
    aux: [
      { k: 4, level: 0, alpha: 1 / 32, start: 0, end: 11 },
      { k: 6, level: 1, alpha: 0.2, start: 11, end: 30 },
    ],
    seed: 4,
  },
  // d % 16 = 0: reduce_features16 (16 columns per invocation), one column block; aux k % 4 = 0:
  // entry_dpre4x4 (four entries of a row per invocation).
  {
    B: 53,
    d: 48,
    layers: [97],
    k: 6,
    aux: [{ k: 8, level: 0, alpha: 1 / 32, start: 0, end: 97 }],
    seed: 5,
  },
  // One level, k % 4 = 0, d % 4 = 0: the main codes have source 0 and take entry_dpre4x4 too.
  {
    B: 45,
    d: 36,
    layers: [61],
    k: 8,
    aux: [{ k: 5, level: 0, alpha: 1 / 32, start: 0, end: 61 }],
    seed: 7,
  },
  // d % 64 = 0: also run with matrix textures. One level: the main codes and the aux codes take
  // entry_dpre4x4, the aux ones on decoder rows 4 090..4 109 (either side of the texture's first
  // layer of 4 096 rows).
  {
    B: 23,
    d: 64,
    layers: [4110],
    k: 4,
    aux: [{ k: 8, level: 0, alpha: 1 / 32, start: 4090, end: 4110 }],
    seed: 8,
  },
  // U's texture spans two layers (S·B = 4 100 rows): the aux source's rows cross row 4 096.
  {
    B: 2050,
    d: 64,
    layers: [40],
    k: 4,
    aux: [{ k: 4, level: 0, alpha: 1 / 32, start: 0, end: 40 }],
    seed: 10,
    everyFeature: true,
  },
  // Two levels (main codes take entry_dpre4: their source follows the layer), textures too.
  {
    B: 29,
    d: 128,
    layers: [9, 21],
    k: 6,
    aux: [{ k: 4, level: 1, alpha: 0.25, start: 9, end: 30 }],
    seed: 9,
  },
  // d % 16 = 0 wider than one block of 48 invocations × 16 columns (second block partly idle).
  {
    B: 19,
    d: 800,
    layers: [13, 10],
    k: 5,
    aux: [{ k: 3, level: 1, alpha: 0.3, start: 0, end: 23 }],
    seed: 6,
  },
];

// "groups" (eight invocations per entry dot product, the real-GPU layout) needs d % 4 == 0; the
// matrix textures (decW and xs given, U copied: read by the "lanes" dot products and
// reduce_features16) need d % 64 == 0.
const LAYOUTS = (d: number): [DpreLayout, boolean][] => [
  ["lanes", false],
  ...(d % 4 === 0 ? [["groups", false] as [DpreLayout, boolean]] : []),
  ...(matrixTextureSupported(d) ? [["lanes", true] as [DpreLayout, boolean]] : []),
];

for (const c of CASES) {
  for (const [dpre, textures] of LAYOUTS(c.d)) {
    const n = c.layers.reduce((a, b) => a + b, 0);
    Deno.test(
      `sparse backward equals the dense reference (B=${c.B} d=${c.d} layers=${c.layers} k=${c.k} aux=${c.aux.length}, dpre ${dpre}${
        textures ? ", matrix textures" : ""
      })`,
      async () => {
        const gpu = await testGpu();
        const data = makeData(c);
        const want = denseReference(c, data);
        const got = await runGpu(gpu, c, data, dpre, textures);
        close(got.gradDec, want.gradDec, "grad decW");
        close(got.gradEnc, want.gradEnc, "grad encW");
        close(got.gradB, want.gradB, "grad bDec");
        // Features without an active entry get exactly zero rows; segment starts are a valid scan.
        const active = new Set<number>();
        const mark = (idx: Uint32Array, val: Float32Array) =>
          idx.forEach((f, e) => f !== EMPTY && val[e] > 0 && active.add(f));
        mark(data.idx, data.val);
        data.aux.forEach((a) => mark(a.idx, a.val));
        let total = 0;
        for (let f = 0; f < n; f++) {
          assert.equal(got.start[f], total, `start[${f}]`);
          const cnt = got.start[f + 1] - got.start[f];
          assert.equal(cnt > 0, active.has(f), `feature ${f} entries`);
          total += cnt;
          if (!active.has(f)) {
            for (let j = 0; j < c.d; j++) assert.equal(got.gradDec[f * c.d + j], 0);
          }
        }
        assert.ok(active.size < n || c.k === n || c.everyFeature, "some feature never appears");
      },
    );
  }
}

Deno.test("sparse backward: the per-feature sums' grid interleaved 1, 3, 7 or 64 ways gives the same gradients bitwise", async () => {
  const gpu = await testGpu();
  // reduce_features (d = 39, a 3-level tree), reduce_features4 (d = 36), reduce_features16 (d = 64
  // over 4 110 features, also from textures; d = 800 in two column blocks). Feature counts 61, 4 110
  // and 23: not multiples of 3, 7 or 64, and fewer than 64·q, so some workgroups get no feature.
  for (const c of [CASES[3], CASES[5], CASES[6], CASES[9]]) {
    const data = makeData(c);
    const want = denseReference(c, data);
    for (const [dpre, textures] of LAYOUTS(c.d)) {
      const runs = [];
      for (const spread of [1, 3, 7, 64]) {
        runs.push(await runGpu(gpu, c, data, dpre, textures, spread));
      }
      close(runs[0].gradDec, want.gradDec, "grad decW");
      close(runs[0].gradEnc, want.gradEnc, "grad encW");
      for (const r of runs.slice(1)) {
        assert.deepEqual(r.gradDec, runs[0].gradDec);
        assert.deepEqual(r.gradEnc, runs[0].gradEnc);
        assert.deepEqual(r.gradB, runs[0].gradB);
      }
    }
  }
  await assert.rejects(
    () => runGpu(gpu, CASES[3], makeData(CASES[3]), "lanes", false, 0),
    /spread 0/,
  );
});

Deno.test("sparse backward is deterministic: sorted entries are in (block, segment, row) order and repeat bitwise", async () => {
  const gpu = await testGpu();
  const c = CASES[3];
  const data = makeData(c);
  const a = await runGpu(gpu, c, data);
  const b = await runGpu(gpu, c, data);
  assert.deepEqual(a.gradDec, b.gradDec);
  assert.deepEqual(a.gradEnc, b.gradEnc);
  assert.deepEqual(a.gradB, b.gradB);
  assert.deepEqual(a.key, b.key);
  const n = c.layers.reduce((x, y) => x + y, 0);
  // Within each feature's segment, rows of one source are increasing.
  for (let f = 0; f < n; f++) {
    const last = new Map<number, number>();
    for (let e = a.start[f]; e < a.start[f + 1]; e++) {
      const src = a.key[e] >>> 24;
      const row = a.key[e] & 0xffffff;
      assert.ok(row > (last.get(src) ?? -1), `feature ${f}: rows out of order`);
      last.set(src, row);
    }
  }
});

Deno.test("sparse backward equals the reference twin lib/sae/reference backward() (3-level tree, 2 aux groups)", async () => {
  const gpu = await testGpu();
  for (const c of [CASES[0], CASES[3]]) {
    const { B, d } = c;
    const n = c.layers.reduce((a, b) => a + b, 0);
    const data = makeData(c);
    const L = c.layers.length;
    const featureLayer = featureLayers({ layers: c.layers });
    const recon = Array.from({ length: L }, (_, l) => data.recon.slice(l * B * d, (l + 1) * B * d));
    const loss = {
      total: 0,
      main: 0,
      mainPerLevel: [],
      fvu: 0,
      totalVar: data.scal[0],
      recon,
      aux: c.aux.map((g, a) => ({
        group: { start: g.start, end: g.end, level: g.level, alpha: g.alpha, gated: L > 1 },
        codes: { idx: data.aux[a].idx, val: data.aux[a].val, K: g.k },
        recon: data.aux[a].ehat,
        residual: data.xs.map((x, t) => x - recon[g.level][t]),
        denom: data.scal[1 + a],
        value: 0,
      })),
    };
    const want = backward(
      data.xs,
      B,
      d,
      n,
      data.encW,
      data.decW,
      data.bDec,
      { idx: data.idx, val: data.val, K: c.k },
      featureLayer,
      loss,
    );
    const got = await runGpu(gpu, c, data);
    close(got.gradDec, Float64Array.from(want.decW), "grad decW vs reference");
    close(got.gradEnc, Float64Array.from(want.encW), "grad encW vs reference");
    close(got.gradB, Float64Array.from(want.bDec), "grad bDec vs reference");
  }
});
