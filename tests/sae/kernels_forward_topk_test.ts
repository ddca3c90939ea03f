import assert from "node:assert/strict";
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import { selectAuxTwin, selectTreeTwin } from "./kernels_forward_twins.ts";
import { createStorage, readF32, readU32, uploadStorage } from "../../lib/gpu/buffer.ts";
import { runOps } from "../../lib/sae/ops/grid.ts";
import {
  childLists,
  createLayerTable,
  createParentsTexture,
  createPreTexture,
  encodePreTextureCopy,
  maxFireWords,
  preTextureSupported,
  selectAuxOp,
  type SelectionLayout,
  selectionWorkgroup,
  selectKernelFor,
  selectTopKOp,
  slotsPerRow,
  writeParentsTexture,
} from "../../lib/sae/ops/topk.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import { CHUNK_MAX_FEATURES } from "../../lib/sae/ops/encoder_gemm.ts";
import { uploadPre } from "./kernels_forward_twins.ts";

/** Random pre-activations with deliberate ties (repeated values and exact zeros). */
function preWithTies(B: number, n: number, seed: number): Float32Array {
  const pre = randn(B * n, seed);
  const r = rng(seed + 1);
  for (let i = 0; i < pre.length; i++) {
    const u = r();
    if (u < 0.1) pre[i] = 0;
    else if (u < 0.2) pre[i] = 0.5;
    else if (u < 0.25) pre[i] = -0;
  }
  return pre;
}

/** Random parents per layer: layer 0 all root (0), layer l uniform over [0, o_l]. */
function randomParents(sizes: number[], seed: number): Int32Array[] {
  const r = rng(seed);
  let o = 0;
  return sizes.map((s) => {
    const p = new Int32Array(s).map(() => Math.floor(r() * (o + 1)));
    o += s;
    return p;
  });
}

/** A pre chunk uploaded to a buffer and, with `tex`, copied into its texture mirror too. */
async function preChunk(gpu: Gpu, pre: Float32Array, rows: number, n: number, tex: boolean) {
  const buf = uploadPre(gpu, pre, rows, n);
  if (!tex) return { pre: buf, destroy: () => buf.destroy() };
  const preTex = createPreTexture(gpu, rows, n);
  const encoder = gpu.device.createCommandEncoder();
  encodePreTextureCopy(encoder, buf, preTex, rows);
  gpu.device.queue.submit([encoder.finish()]);
  await gpu.device.queue.onSubmittedWorkDone();
  return { pre: buf, preTex, destroy: () => (buf.destroy(), preTex.texture.destroy()) };
}

/** How `gpuSelect` feeds the selection. */
interface SelectInputs {
  /** Tree parents per layer (gated layouts). */
  parents?: Int32Array[];
  /** Read pre through its texture mirror. */
  tex?: boolean;
  /** The chunk maxima of a pre chunk, read instead of a first pass (CMAX_IN). */
  cmaxOf?: (chunk: Float32Array, rows: number) => Float32Array;
  /** Read the parents through their texture mirror (the engine's, software adapters). */
  parentsTexture?: boolean;
  /** Pass the children by parent (the engine's, tree): later gated layers from them. */
  children?: boolean;
}

/** Run the selection on the GPU in two row chunks; idx, val [B, K]. */
async function gpuSelect(
  gpu: Gpu,
  pre: Float32Array,
  B: number,
  n: number,
  layout: SelectionLayout,
  { parents, tex = false, cmaxOf, parentsTexture = false, children = false }: SelectInputs = {},
) {
  const K = slotsPerRow(layout);
  const layerTable = createLayerTable(gpu, layout);
  const parentsBuf = parents ? uploadStorage(gpu, concat(parents), "parents") : undefined;
  const childBuf = parents && children
    ? uploadStorage(gpu, childLists(concat(parents)), "children")
    : undefined;
  // The parents' texture mirror (software adapters' engine), read instead of the buffer.
  const parentsTex = parents && parentsTexture ? createParentsTexture(gpu, n) : undefined;
  if (parentsTex) writeParentsTexture(gpu, parentsTex, concat(parents!));
  const idx = createStorage(gpu, B * K * 4, "idx");
  const val = createStorage(gpu, B * K * 4, "val");
  const h = Math.ceil(B / 2);
  for (const [rowOffset, rows] of [[0, h], [h, B - h]]) {
    if (rows === 0) continue;
    const chunk = await preChunk(gpu, pre.subarray(rowOffset * n), rows, n, tex);
    const cmax = cmaxOf
      ? uploadStorage(
        gpu,
        cmaxOf(pre.subarray(rowOffset * n, (rowOffset + rows) * n), rows),
        "cmax",
      )
      : undefined;
    const buffers = {
      ...(cmax ? { cmax } : {}),
      pre: chunk.pre,
      ...(chunk.preTex ? { preTex: chunk.preTex } : {}),
      layerTable,
      idx,
      val,
      ...(parentsBuf ? { parents: parentsBuf } : {}),
      ...(parentsTex ? { parentsTex } : {}),
      ...(childBuf ? { children: childBuf } : {}),
    };
    await runOps(gpu, selectTopKOp(gpu, buffers, layout, { n, rows, rowOffset }), "select");
    chunk.destroy();
    cmax?.destroy();
  }
  childBuf?.destroy();
  return { idx, val, layerTable, parentsBuf, parentsTex, K };
}

function concat(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

Deno.test("selection workgroups: one SIMD group on software adapters while k ≤ 4·WG, 64 on GPUs", async () => {
  const gpu = await testGpu();
  const soft = { ...gpu, isFallback: true }, hard = { ...gpu, isFallback: false };
  assert.deepEqual(
    [1, 32, 33, 64, 65, 128, 129, 256].map((k) => selectionWorkgroup(soft, k)),
    [8, 8, 16, 16, 32, 32, 64, 64],
  );
  assert.deepEqual([1, 256].map((k) => selectionWorkgroup(hard, k)), [64, 64]);
  // Few candidates and k > 32 (AuxK): one SIMD group on software adapters as well.
  assert.deepEqual(
    [[256, 1229], [256, 1536], [256, 1537], [33, 100], [32, 100]].map(([k, c]) =>
      selectionWorkgroup(soft, k, c)
    ),
    [8, 8, 64, 8, 8],
  );
  assert.equal(selectionWorkgroup(hard, 256, 100), 64);
});

Deno.test("the fired-parents bitset gets the workgroup memory the device allows beyond the rest", async () => {
  const gpu = await testGpu();
  const withLimit = (bytes: number) =>
    ({
      ...gpu,
      device: { limits: { maxComputeWorkgroupStorageSize: bytes } } as unknown as GPUDevice,
    }) as Gpu;
  // WebGPU's guaranteed 16 KiB leave 128 words (4 096 parent features); 32 KiB and more the cap.
  assert.deepEqual([16384, 32768, 49152].map((b) => maxFireWords(withLimit(b))), [128, 4096, 4096]);
  const tree = { sizes: [5000, 100], kPerLayer: [1, 1], gated: true };
  assert.throws(
    () => selectKernelFor(withLimit(16384), "select_topk", tree),
    /5000 features in the parent layers exceed the kernel's limit of 4096 on this device/,
  );
  assert.equal(selectKernelFor(withLimit(32768), "select_topk", tree).constants?.FIRE_WORDS, 256);
});

Deno.test("per-row top-k kernel matches the TS twin (k=1, k=n, ties, odd n; software and GPU workgroups)", async () => {
  const device = await testGpu();
  // The workgroup follows k and the adapter (selectionWorkgroup): run the software adapter's
  // sizes (8 to 64 lanes over these k) and the GPUs' (64 throughout).
  for (const isFallback of [true, false]) await topkCases({ ...device, isFallback });
});

async function topkCases(gpu: Gpu) {
  // Layers of ≤ 64 features (SMALL_MAX) place all candidates by pairwise ranks; wider ones take the
  // chunk filter (n ≥ 64·k, n % 4 == 0) or the lane filter (vec4 reads when n % 4 == 0), whose ≤ 512
  // winners are ranked pairwise, more sorted.
  const cases: [number, number, number][] = [
    [5, 1, 1],
    [9, 7, 1],
    [9, 7, 7],
    [70, 300, 32],
    [3, 1000, 256],
    [33, 65, 64],
    [4, 64, 10],
    [6, 2048, 32],
    [5, 1027, 1],
    [4, 1500, 200],
    [3, 600, 256],
    [2, 4096, 64],
    [3, 2000, 129],
    // Long layers (n ≥ 64·k, vec4): the chunk filter, with 2, 6 and 16 reads per chunk, a partial
    // last block (6 148) and k = 1.
    [7, 6144, 32],
    [5, 6148, 32],
    [3, 24576, 32],
    [5, 4096, 1],
  ];
  // n % 64 == 0: also with pre read through its texture mirror (PRE_TEX, software adapters).
  const runs = cases.flatMap((c) =>
    preTextureSupported(gpu, c[0], c[1]) ? [[...c, 0], [...c, 1]] : [[...c, 0]]
  );
  assert.ok(runs.length >= cases.length + 3, "texture runs");
  for (const [B, n, k, tex] of runs) {
    const pre = preWithTies(B, n, B * n + k);
    const layout = { sizes: [n], kPerLayer: [k], gated: false };
    const got = await gpuSelect(gpu, pre, B, n, layout, { tex: tex === 1 });
    const want = selectTreeTwin(pre, B, n, [n], [k], null);
    const label = `B=${B} n=${n} k=${k}${tex ? " (pre texture)" : ""}`;
    assert.deepEqual(await readU32(gpu, got.idx, B * k), want.idx, `idx ${label}`);
    assertClose(await readF32(gpu, got.val, B * k), want.val, {
      atol: 0,
      rtol: 0,
      label: `val ${label}`,
    });
    got.idx.destroy(), got.val.destroy(), got.layerTable.destroy();
  }
}

/** What the subgroup GEMM writes as cmax: per row, the largest pre of each 64 features. */
function chunkMaxTwin(pre: Float32Array, rows: number, n: number): Float32Array {
  const nc = Math.ceil(n / CHUNK_MAX_FEATURES);
  const out = new Float32Array(rows * nc).fill(-Infinity);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) {
      const c = r * nc + Math.floor(i / CHUNK_MAX_FEATURES);
      out[c] = Math.max(out[c], pre[r * n + i]);
    }
  }
  return out;
}

/**
 * One ungated top-k layer of [B, n] pre selected from chunk maxima (`chunkMaxTwin`'s unless
 * `maxima` edits them) on the GPU; the codes read back beside the twin's.
 */
async function selectFromMaxima(
  gpu: Gpu,
  pre: Float32Array,
  B: number,
  n: number,
  k: number,
  tex: boolean,
  maxima = (cmax: Float32Array, _rows: number) => cmax,
) {
  const layout = { sizes: [n], kPerLayer: [k], gated: false };
  const got = await gpuSelect(gpu, pre, B, n, layout, {
    tex,
    cmaxOf: (chunk, rows) => maxima(chunkMaxTwin(chunk, rows, n), rows),
  });
  const idx = await readU32(gpu, got.idx, B * k), val = await readF32(gpu, got.val, B * k);
  got.idx.destroy(), got.val.destroy(), got.layerTable.destroy();
  return { idx, val, want: selectTreeTwin(pre, B, n, [n], [k], null) };
}

Deno.test("top-k from the GEMM's chunk maxima matches the TS twin (partial last chunk, as many chunks as k, pre texture)", async () => {
  const device = await testGpu();
  for (const isFallback of [true, false]) {
    const gpu = { ...device, isFallback };
    // [B, n, k]: 516 = 8 chunks + 4 features; 2 048 has exactly k = 32 chunks; 640 also through
    // the pre texture; 1 000 with k = 129 > 4·WG on software adapters (no chunk filter there).
    for (
      const [B, n, k] of [[6, 516, 4], [5, 6144, 32], [4, 2048, 32], [3, 640, 16], [3, 1000, 129]]
    ) {
      for (const tex of preTextureSupported(gpu, B, n) ? [false, true] : [false]) {
        const pre = preWithTies(B, n, 3 * n + k);
        const { idx, val, want } = await selectFromMaxima(gpu, pre, B, n, k, tex);
        const label = `B=${B} n=${n} k=${k}${tex ? " (pre texture)" : ""} WG ${
          selectionWorkgroup(gpu, k)
        }`;
        assert.deepEqual(idx, want.idx, `idx ${label}`);
        assertClose(val, want.val, { atol: 0, rtol: 0, label: `val ${label}` });
      }
    }
  }
  // 1 024 chunks all reaching the threshold (a tie at the top of each): more than the hit list
  // holds (CHUNK_CAP = 768), so the kernel must fall back to its own passes (a winner sits in chunk
  // 1 000, which a truncated list would drop).
  {
    const B = 2, n = 65536, k = 32;
    const pre = preWithTies(B, n, 5);
    for (let i = 17; i < B * n; i += 64) pre[i] = 9;
    for (let b = 0; b < B; b++) pre[b * n + 1000 * 64 + 5] = 10;
    const { idx, want } = await selectFromMaxima(device, pre, B, n, k, false);
    assert.deepEqual(idx, want.idx, "idx, 1 024 tied chunks");
  }
  // The kernel reads the maxima it is given: one that overstates a chunk holding none of a row's
  // winners raises the threshold above the k-th value, and the row keeps fewer than k codes.
  const B = 2, n = 6144, k = 8;
  const pre = preWithTies(B, n, 77);
  const { idx, want } = await selectFromMaxima(device, pre, B, n, k, false, (cmax, rows) => {
    const nc = cmax.length / rows;
    for (let r = 0; r < rows; r++) {
      const row = cmax.subarray(r * nc, (r + 1) * nc);
      // Overstate (above every value of the row) the k chunks that hold the smallest maxima.
      const order = [...row.keys()].sort((a, b) => row[a] - row[b]);
      for (const c of order.slice(0, k)) row[c] = 100 + c;
    }
    return cmax;
  });
  assert.notDeepEqual(idx, want.idx, "overstated chunk maxima must change the codes");
  assert.ok(idx.includes(0xffffffff), "rows keep fewer than k codes");
});

Deno.test("top-k threshold from kept keys: the k-th largest may sit at any kept position of a lane", async () => {
  // Each invocation keeps the m largest chunk maxima of its strided share (chunk c goes to lane
  // c % WG); T is the k-th largest kept key. k overstated maxima (above every value of the row)
  // make T the smallest of them, placed on row r at position r % m of lane 0. Read through them,
  // no key reaches T and the row keeps no code; a T missed at that position (0: no threshold)
  // sends the row to the passes over pre, which find the true top k.
  const device = await testGpu();
  const n = 6144, k = 32;
  for (const isFallback of [true, false]) {
    const gpu = { ...device, isFallback };
    const wg = selectionWorkgroup(gpu, k);
    const m0 = Math.ceil(k / wg);
    const m = m0 > 1 ? m0 + 1 : m0; // kept_per_lane in kernels/topk.wgsl
    const B = m;
    const pre = preWithTies(B, n, 4242);
    let done = 0; // the selection runs in two row chunks, in order
    const { idx } = await selectFromMaxima(gpu, pre, B, n, k, false, (cmax, rows) => {
      const nc = cmax.length / rows;
      for (let r = 0; r < rows; r++) {
        const j = (done + r) % m;
        // Lane 0: j larger overstated keys and the smallest (100) at its position j.
        const chunks: number[] = [];
        for (let i = 0; i <= j; i++) chunks.push(i * wg);
        // The other k − j − 1 over lanes 1.., at most m each so that all are kept.
        for (let lane = 1, i = 0; chunks.length < k; i++) {
          chunks.push(lane + i * wg);
          if (i + 1 === m) lane++, i = -1;
        }
        const row = cmax.subarray(r * nc, (r + 1) * nc);
        chunks.forEach((c, i) => (row[c] = i === j ? 100 : 101 + i));
      }
      done += rows;
      return cmax;
    });
    for (let r = 0; r < B; r++) {
      const row = [...idx.subarray(r * k, (r + 1) * k)];
      assert.ok(
        row.every((f) => f === 0xffffffff),
        `WG ${wg}, m ${m}: row ${r} (threshold at kept position ${r % m}) kept codes`,
      );
    }
  }
});

Deno.test("tree-gated per-layer top-k matches the TS twin, and no child fires without its parent", async () => {
  const gpu = await testGpu();
  const cases: {
    B: number;
    sizes: number[];
    k: number[];
    rootShare?: number;
    deepBias?: number;
  }[] = [
    { B: 17, sizes: [40, 63, 100], k: [5, 3, 2] },
    { B: 66, sizes: [7, 20, 33, 50], k: [7, 1, 4, 50] },
    { B: 4, sizes: [300, 700], k: [21, 5] },
    { B: 9, sizes: [600, 1024, 514], k: [8, 4, 3] },
    // Parents past the texture mirror's first row of 4 096.
    { B: 5, sizes: [2048, 3072], k: [12, 6] },
    // Layer 1 starts at 130: on odd rows its pre is 4-aligned in the chunk (the chunk filter runs)
    // while its features are not (their parents are not one vec4 of the parents).
    { B: 6, sizes: [130, 1200], k: [4, 3] },
    // With child lists: layer 1 has ~400 eligible features per fired parent, past CHILD_MAX (the
    // pass over the layer decides); a third of the deeper layers' features hang from their root.
    { B: 5, sizes: [4, 2000], k: [4, 5] },
    { B: 11, sizes: [64, 300, 900], k: [10, 6, 9], rootShare: 1 / 3 },
    // Few eligible features, most of them negative, under k: the first ineligible ones fill the
    // layer's slots with 0, ahead of the negative ones.
    { B: 8, sizes: [50, 40, 3000], k: [2, 30, 40], deepBias: -1 },
  ];
  // The parents from their buffer, and from their texture mirror (the engine's, software
  // adapters); the gated layers after the first by a pass over the layer, and from child lists,
  // those also in a GPU's workgroup of 64 (with the parents' buffer, as on GPUs).
  const runs = cases.flatMap((c) =>
    [false, true].flatMap((parentsTexture) =>
      [false, true].map((children) => ({ ...c, parentsTexture, children, gpuWg: false }))
    ).concat([{ ...c, parentsTexture: false, children: true, gpuWg: true }])
  );
  for (const run of runs) {
    const { B, sizes, k, parentsTexture, children, gpuWg, rootShare = 0, deepBias = 0.3 } = run;
    const n = sizes.reduce((a, b) => a + b, 0);
    const pre = preWithTies(B, n, n + B);
    // Bias up so that many parents fire and gating is exercised both ways (the later layers by
    // deepBias).
    for (let i = 0; i < pre.length; i++) pre[i] += i % n < sizes[0] ? 0.3 : deepBias;
    const parents = randomParents(sizes, B + n);
    const pick = rng(n + 7);
    for (let l = 1, o = sizes[0]; l < sizes.length; o += sizes[l++]) {
      parents[l].forEach((_, i) => {
        if (pick() < rootShare) parents[l][i] = o;
      });
    }
    const layout = { sizes, kPerLayer: k, gated: true };
    const got = await gpuSelect(gpuWg ? { ...gpu, isFallback: false } : gpu, pre, B, n, layout, {
      parents,
      parentsTexture,
      children,
    });
    const want = selectTreeTwin(pre, B, n, sizes, k, parents);
    const label = `B=${B} sizes=${sizes} k=${k}${parentsTexture ? " (parents texture)" : ""}${
      children ? " (child lists)" : ""
    }${gpuWg ? " (GPU workgroup)" : ""}`;
    const idx = await readU32(gpu, got.idx, B * got.K);
    const val = await readF32(gpu, got.val, B * got.K);
    assert.deepEqual(idx, want.idx, `idx ${label}`);
    assertClose(val, want.val, { atol: 0, rtol: 0, label: `val ${label}` });
    // Eq. 6 invariant: an active child's parent is the root or active on the same row.
    const flat = concat(parents);
    const layerOf = (f: number) => {
      let o = 0;
      for (let l = 0; l < sizes.length; l++) {
        if (f < o + sizes[l]) return o;
        o += sizes[l];
      }
      return o;
    };
    for (let b = 0; b < B; b++) {
      const active = new Set<number>();
      for (let s = 0; s < got.K; s++) if (val[b * got.K + s] > 1e-3) active.add(idx[b * got.K + s]);
      for (const f of active) {
        const p = flat[f];
        assert.ok(
          p === layerOf(f) || active.has(p),
          `row ${b}: feature ${f} active without parent ${p}`,
        );
      }
    }
    got.idx.destroy(), got.val.destroy(), got.layerTable.destroy(), got.parentsBuf?.destroy();
    got.parentsTex?.texture.destroy();
  }
});

Deno.test("AuxK selection among dead features matches the TS twin (gated and not)", async () => {
  const gpu = await testGpu();
  const cases = [
    { B: 13, sizes: [50, 77], k: [6, 3], gated: true, auxLayer: 1, kAux: 8 },
    { B: 13, sizes: [50, 77], k: [6, 3], gated: true, auxLayer: 0, kAux: 256 },
    { B: 21, sizes: [129], k: [4], gated: false, auxLayer: 0, kAux: 1 },
    { B: 21, sizes: [129], k: [4], gated: false, auxLayer: 0, kAux: 40 },
    { B: 7, sizes: [800, 1200], k: [10, 5], gated: true, auxLayer: 1, kAux: 64 },
    { B: 7, sizes: [2000], k: [16], gated: false, auxLayer: 0, kAux: 256 },
    { B: 5, sizes: [600, 1100], k: [9, 4], gated: true, auxLayer: 1, kAux: 100, deadP: 1 },
    { B: 5, sizes: [600, 1100], k: [9, 4], gated: false, auxLayer: 0, kAux: 32, deadP: 1 },
    { B: 3, sizes: [60, 90], k: [3, 2], gated: true, auxLayer: 1, kAux: 8, deadP: 0 },
    // n % 64 == 0: pre read through its texture mirror (PRE_TEX).
    { B: 9, sizes: [64, 192], k: [3, 2], gated: true, auxLayer: 1, kAux: 40, tex: true },
    { B: 6, sizes: [2048], k: [32], gated: false, auxLayer: 0, kAux: 256, tex: true },
    {
      B: 5,
      sizes: [448, 576],
      k: [9, 4],
      gated: true,
      auxLayer: 0,
      kAux: 100,
      deadP: 1,
      tex: true,
    },
    { B: 4, sizes: [1024], k: [8], gated: false, auxLayer: 0, kAux: 16, deadP: 0.05, tex: true },
    { B: 4, sizes: [1024], k: [8], gated: false, auxLayer: 0, kAux: 256, deadP: 0.15, tex: true },
    // More dead features than the kernel caches (SCRATCH = 1 536): the lane filter's bound lists
    // the candidates; with ~1 260 dead ties at the top (more than MAX_C = 1 024 reach the bound), the
    // radix select.
    { B: 3, sizes: [4000], k: [8], gated: false, auxLayer: 0, kAux: 256, deadP: 0.6 },
    { B: 3, sizes: [300, 3000], k: [4, 4], gated: true, auxLayer: 1, kAux: 100, deadP: 0.7 },
    {
      B: 2,
      sizes: [5000],
      k: [8],
      gated: false,
      auxLayer: 0,
      kAux: 200,
      deadP: 0.9,
      topTies: 1400,
    },
  ];
  for (
    const { B, sizes, k, gated, auxLayer, kAux, deadP = 0.4, tex = false, topTies = 0 } of cases
  ) {
    const n = sizes.reduce((a, b) => a + b, 0);
    const pre = preWithTies(B, n, 3 * n + kAux);
    for (let i = 0; i < pre.length; i++) pre[i] += 0.3;
    // Every third feature from 0 up to 3·topTies (most of them dead) at the top value.
    for (let b = 0; b < B; b++) for (let i = 0; i < 3 * topTies; i += 3) pre[b * n + i] = 9;
    const parents = gated ? randomParents(sizes, n) : undefined;
    const r = rng(kAux + n);
    const dead = new Uint32Array(n).map(() => (r() < deadP ? 1 : 0));
    const layout = { sizes, kPerLayer: k, gated };
    // Through pre's texture, as the engine on software adapters: the parents' texture mirror too.
    const sel = await gpuSelect(gpu, pre, B, n, layout, { parents, tex, parentsTexture: tex });
    const idx = await readU32(gpu, sel.idx, B * sel.K);
    const val = await readF32(gpu, sel.val, B * sel.K);
    const deadBuf = uploadStorage(gpu, dead, "dead");
    const auxIdx = createStorage(gpu, B * kAux * 4, "auxIdx");
    const auxVal = createStorage(gpu, B * kAux * 4, "auxVal");
    const chunk = await preChunk(gpu, pre, B, n, tex);
    const buffers = {
      pre: chunk.pre,
      ...(chunk.preTex ? { preTex: chunk.preTex } : {}),
      layerTable: sel.layerTable,
      idx: sel.idx,
      val: sel.val,
      dead: deadBuf,
      auxIdx,
      auxVal,
      ...(sel.parentsBuf ? { parents: sel.parentsBuf } : {}),
      ...(sel.parentsTex ? { parentsTex: sel.parentsTex } : {}),
    };
    const want = selectAuxTwin(
      pre,
      B,
      n,
      sizes,
      parents ?? null,
      idx,
      val,
      sel.K,
      dead,
      auxLayer,
      kAux,
    );
    // Without a dead bound a software adapter selects in 64 lanes once kAux > 32; with the exact
    // count (≤ SOFT_CACHED_MAX_CANDIDATES) in 8 (selectionWorkgroup): both must give the twin's
    // codes, in ascending feature order.
    const deadCount = dead.reduce((a, x) => a + x, 0);
    for (const deadBound of [undefined, deadCount]) {
      // Poison the outputs so that each run must write every slot.
      gpu.device.queue.writeBuffer(auxIdx, 0, new Uint32Array(B * kAux).fill(12345));
      gpu.device.queue.writeBuffer(auxVal, 0, new Float32Array(B * kAux).fill(-7));
      await runOps(
        gpu,
        selectAuxOp(gpu, buffers, layout, { n, rows: B, rowOffset: 0, auxLayer, kAux, deadBound }),
        "aux",
      );
      const label =
        `B=${B} dead bound ${deadBound} sizes=${sizes} gated=${gated} aux layer ${auxLayer} kAux=${kAux}` +
        (tex ? " (pre texture)" : "");
      assert.deepEqual(await readU32(gpu, auxIdx, B * kAux), want.auxIdx, `auxIdx ${label}`);
      assertClose(await readF32(gpu, auxVal, B * kAux), want.auxVal, {
        atol: 0,
        rtol: 0,
        label: `auxVal ${label}`,
      });
    }
    for (const b of [deadBuf, auxIdx, auxVal, sel.idx, sel.val, sel.layerTable]) b.destroy();
    chunk.destroy();
    sel.parentsBuf?.destroy();
    sel.parentsTex?.texture.destroy();
  }
});

Deno.test("top-k with many ties at the threshold: sorts 513..1024 candidates, radix select beyond", async () => {
  const gpu = await testGpu();
  const n = 3000, k = 32;
  // [rows, seed, tie pattern]: 600 ties at the top of each row (sorted: more than RANK_MAX = 512
  // candidates), then 600 + 1500 more (over the 1024 candidates: the radix select).
  const cases: [number, number, (pre: Float32Array) => void][] = [
    [3, 7, (pre) => {
      for (let i = 0; i < pre.length; i += 5) pre[i] = 5;
    }],
    [4, 99, (pre) => {
      for (let i = 0; i < pre.length; i += 5) pre[i] = 5;
      for (let i = 1; i < pre.length; i += 2) pre[i] = 5;
    }],
  ];
  for (const [B, seed, ties] of cases) {
    const pre = preWithTies(B, n, seed);
    ties(pre);
    const layout = { sizes: [n], kPerLayer: [k], gated: false };
    const got = await gpuSelect(gpu, pre, B, n, layout);
    const want = selectTreeTwin(pre, B, n, [n], [k], null);
    assert.deepEqual(await readU32(gpu, got.idx, B * k), want.idx, `B=${B}`);
    assertClose(await readF32(gpu, got.val, B * k), want.val, {
      atol: 0,
      rtol: 0,
      label: `B=${B}`,
    });
    got.idx.destroy(), got.val.destroy(), got.layerTable.destroy();
  }
});

Deno.test("top-k rejects a pre buffer that cannot be read as vec4", async () => {
  const gpu = await testGpu();
  const pre = uploadStorage(gpu, new Float32Array(3 * 5), "odd pre");
  const layout = { sizes: [5], kPerLayer: [2], gated: false };
  const layerTable = createLayerTable(gpu, layout);
  const idx = createStorage(gpu, 24, "idx"), val = createStorage(gpu, 24, "val");
  assert.throws(
    () => selectTopKOp(gpu, { pre, layerTable, idx, val }, layout, { n: 5, rows: 3, rowOffset: 0 }),
    /allocate preChunkBytes\(3, 5\) = 64/,
  );
  for (const b of [pre, layerTable, idx, val]) b.destroy();
});
