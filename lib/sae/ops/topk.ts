/**
 * Per-row top-k selection of SAE codes on the GPU (kernels/topk.wgsl): plain top-k, the Tree SAE's
 * parent-gated per-layer top-k, and AuxK candidate selection among dead features.
 *
 * Shapes: B batch rows, n features, L selection layers of sizes s_l at offsets o_l with k_l each,
 * K = Σ k_l slots per row (layer-major, descending value, ties → lower index).
 *   pre [rows, n] (a row chunk: batch rows rowOffset..rowOffset+rows−1; allocate preChunkBytes(rows, n)
 *   since it is read as vec4), parents [n] i32 (layer l's
 *   entries at o_l.., value o_l = root), children [2n + 1] u32 (`childLists` of the parents),
 *   idx [B, K] u32 (0xFFFFFFFF = unused), val [B, K] f32, dead [n] u32 (non-zero = dead),
 *   auxIdx [B, kAux] u32, auxVal [B, kAux] f32.
 * topk / matryoshka: one ungated layer {sizes: [n], kPerLayer: [k]}.
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { createStorage, placeholderBuffer, uploadStorage } from "../../gpu/buffer.ts";
import { kernelTextureExtent, placeholderTexture } from "../../gpu/texture.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { ArborError } from "../../errors.ts";
import { wrapGrid } from "./grid.ts";
import { SOFT_SIMD_LANES } from "../../gpu/workgroups.ts";
import { CHUNK_MAX_FEATURES } from "./encoder_gemm.ts";

/** Invocations per workgroup (one workgroup per row) on GPUs. */
const WG_GPU = 64;
/**
 * Fewest invocations per workgroup on software adapters: one SIMD group of llvmpipe, whose
 * barriers cost little (lib/gpu/workgroups.ts): top-32 of [4 096, 24 576] took 245 ms with 8,
 * 350–420 with 16 and 480–540 with 64.
 */
const WG_SOFT_MIN = SOFT_SIMD_LANES;
/** k ≤ TRY_FAST_LANES·WG keeps the threshold-filter fast path (try_fast in the WGSL). */
const TRY_FAST_LANES = 4;
/**
 * Software adapters, k > 4·WG_SOFT_MIN (AuxK): up to this many candidates per row (SCRATCH in the
 * WGSL) the kernel caches their keys and bisects for the threshold, best in one SIMD group of
 * WG_SOFT_CACHED lanes (lavapipe, 1 229 dead features of 24 576, kAux = 256: 45–65 ms per 1 024
 * rows, against 94 for the radix select in 8 lanes and 120–140 for the lane filter in 64); beyond
 * it the lane filter needs 64 lanes (12 288 dead: the radix select in 8 lanes took 443 ms per 1 024
 * rows).
 */
export const SOFT_CACHED_MAX_CANDIDATES = 1536;
const WG_SOFT_CACHED = 8;

/**
 * Workgroup size of a selection keeping at most k per layer among at most `candidates` per row
 * (the output does not depend on it): on GPUs 64; on software adapters the smallest power of two
 * ≥ WG_SOFT_MIN with k ≤ 4·WG (the fast path), or WG_SOFT_CACHED for k > 4·WG_SOFT_MIN over at
 * most SOFT_CACHED_MAX_CANDIDATES candidates.
 */
export function selectionWorkgroup(gpu: Gpu, k: number, candidates = Infinity): number {
  if (!gpu.isFallback) return WG_GPU;
  if (k > TRY_FAST_LANES * WG_SOFT_MIN && candidates <= SOFT_CACHED_MAX_CANDIDATES) {
    return WG_SOFT_CACHED;
  }
  let wg = WG_SOFT_MIN;
  while (wg < WG_GPU && TRY_FAST_LANES * wg < k) wg *= 2;
  return wg;
}
/** Largest k per layer the kernel holds in workgroup memory (MAX_K in the WGSL). */
export const MAX_K_PER_LAYER = 256;
/** Most "fired" bitset words the kernel takes (131 072 parent features). */
const MAX_FIRE_WORDS = 4096;
/**
 * Bytes of the kernel's other workgroup arrays (hist 1 KiB, candidates 8 KiB, scratch 6 KiB, and
 * under 0.5 KiB of small ones): the bitset gets what the device allows beyond them.
 */
const OTHER_WORKGROUP_BYTES = 15.5 * 1024;

/** Most bitset words that fit this device's workgroup memory (a power of two ≤ MAX_FIRE_WORDS). */
export function maxFireWords(gpu: Gpu): number {
  const room = (gpu.device.limits.maxComputeWorkgroupStorageSize - OTHER_WORKGROUP_BYTES) / 4;
  let words = MAX_FIRE_WORDS;
  while (words > 1 && words > room) words /= 2;
  return words;
}

/** The selection layers: sizes s_l (summing to n) and k_l per layer; gated = tree parents apply. */
export interface SelectionLayout {
  /** Layer sizes s_l; Σ s_l = n. */
  sizes: number[];
  /** k_l per layer, 1 ≤ k_l ≤ min(s_l, 256). */
  kPerLayer: number[];
  /** Whether the tree's parent gate applies (tree SAE); false for topk / matryoshka. */
  gated: boolean;
}

/**
 * Bytes to allocate for a pre chunk of `rows` × `n` read by the selection kernels: they bind it as
 * vec4 (four values per load), so the size is rounded up to a multiple of 16 bytes.
 */
export function preChunkBytes(rows: number, n: number): number {
  return Math.ceil((rows * n * 4) / 16) * 16;
}

/** Throw unless a pre buffer can be bound as vec4 and holds the chunk. */
export function checkPreBuffer(pre: GPUBuffer, rows: number, n: number) {
  if (pre.size % 16 !== 0 || pre.size < rows * n * 4) {
    throw new ArborError(
      `top-k: the pre buffer "${pre.label}" has ${pre.size} bytes; allocate preChunkBytes(${rows}, ${n}) = ` +
        `${preChunkBytes(rows, n)} (a multiple of 16 holding rows × n f32)`,
    );
  }
}

/**
 * Whether the encoder GEMM's chunk maxima (`SelectBuffers.cmax`) can serve a layout's first layer,
 * where a chunk key is then the key of its maximum: one ungated layer, or a gated layout (the
 * tree, whose first layer has the root for every parent) whose first layer is whole chunks.
 */
export function chunkMaximaServe(layout: SelectionLayout): boolean {
  return layout.gated ? layout.sizes[0] % CHUNK_MAX_FEATURES === 0 : layout.sizes.length === 1;
}

/** Slots per row of a layout: K = Σ k_l. */
export function slotsPerRow(layout: SelectionLayout): number {
  return layout.kPerLayer.reduce((a, b) => a + b, 0);
}

/** Check a layout against the kernel's limits; throws ArborError naming the bad field. */
export function validateLayout(layout: SelectionLayout) {
  const { sizes, kPerLayer } = layout;
  if (sizes.length === 0 || sizes.length !== kPerLayer.length) {
    throw new ArborError(
      `selection layout: ${sizes.length} layer sizes but ${kPerLayer.length} k values; give one k per layer`,
    );
  }
  sizes.forEach((s, l) => {
    const k = kPerLayer[l];
    if (!Number.isInteger(k) || k < 1 || k > s || k > MAX_K_PER_LAYER) {
      throw new ArborError(
        `selection layout: k for layer ${l} is ${k}; it must be an integer in [1, min(layer size ${s}, ` +
          `${MAX_K_PER_LAYER})]`,
      );
    }
  });
}

/** Upload the per-layer table (o_l, s_l, k_l, first slot) the kernel reads, as u32 vec4 [L]. */
export function createLayerTable(
  gpu: Gpu,
  layout: SelectionLayout,
  label = "selection layers",
): GPUBuffer {
  validateLayout(layout);
  const table = new Uint32Array(4 * layout.sizes.length);
  let offset = 0, slot = 0;
  layout.sizes.forEach((s, l) => {
    table.set([offset, s, layout.kPerLayer[l], slot], 4 * l);
    offset += s;
    slot += layout.kPerLayer[l];
  });
  return uploadStorage(gpu, table, label);
}

/** Bitset words needed to remember every feature that can be a parent (all but the last layer). */
function fireWords(gpu: Gpu, layout: SelectionLayout): number {
  if (!layout.gated || layout.sizes.length < 2) return 1;
  const parentsSpan = layout.sizes.slice(0, -1).reduce((a, b) => a + b, 0);
  const max = maxFireWords(gpu);
  let words = 1;
  while (words * 32 < parentsSpan) words *= 2; // powers of two: few pipeline variants
  if (words > max) {
    if (Math.ceil(parentsSpan / 32) > max) {
      throw new ArborError(
        `tree selection: ${parentsSpan} features in the parent layers exceed the kernel's limit of ` +
          `${max * 32} on this device; use fewer features in the layers before the last`,
      );
    }
    words = max;
  }
  return words;
}

/** Whether a [rows, n] pre chunk can be mirrored into a pre texture on this device. */
export function preTextureSupported(gpu: Gpu, rows: number, n: number): boolean {
  const max = gpu.device.limits.maxTextureDimension2D;
  return n % 64 === 0 && n / 4 <= max && rows <= max;
}

/** A [rows, n] pre chunk as an rgba32float texture (texel (j/4, r) holds pre[r, j..j+3]). */
export interface PreTexture {
  texture: GPUTexture;
  view: GPUTextureView;
  rows: number;
  n: number;
}

/** Allocate the texture mirror of pre chunks of up to `rows` rows (see `preTextureSupported`). */
export function createPreTexture(gpu: Gpu, rows: number, n: number): PreTexture {
  if (!preTextureSupported(gpu, rows, n)) {
    throw new ArborError(
      `top-k: a pre texture needs n % 64 == 0 and n/4, rows ≤ ${gpu.device.limits.maxTextureDimension2D} ` +
        `(got n = ${n}, rows = ${rows}); read pre from its buffer`,
    );
  }
  const texture = gpu.device.createTexture({
    label: "pre texture",
    // Extents off powers of two: one compile of each kernel that reads it (lib/gpu/texture.ts).
    size: kernelTextureExtent(gpu, n / 4, rows),
    format: "rgba32float",
    // STORAGE_BINDING: the subgroup encoder GEMM can write it directly (textureGemmOp's preOut).
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST |
      GPUTextureUsage.STORAGE_BINDING,
  });
  return { texture, view: texture.createView(), rows, n };
}

/** Record the copy of the first `rows` rows of a pre chunk into its texture. */
export function encodePreTextureCopy(
  encoder: GPUCommandEncoder,
  pre: GPUBuffer,
  tex: PreTexture,
  rows: number,
) {
  if (rows === 0) return;
  encoder.copyBufferToTexture(
    { buffer: pre, bytesPerRow: tex.n * 4, rowsPerImage: rows },
    { texture: tex.texture },
    [tex.n / 4, rows],
  );
}

/** Buffers of `selectTopKOp`. */
export interface SelectBuffers {
  /** [rows, n] pre-activations of the chunk. */
  pre: GPUBuffer;
  /** The same chunk's texture mirror (`encodePreTextureCopy`), read instead of `pre` if given. */
  preTex?: PreTexture;
  /** From `createLayerTable`. */
  layerTable: GPUBuffer;
  /** [n] i32 tree parents; may be omitted when the layout is ungated. */
  parents?: GPUBuffer;
  /** [B, K] u32 output slots. */
  idx: GPUBuffer;
  /** [B, K] f32 output slots. */
  val: GPUBuffer;
  /**
   * [rows, ceil(n / 64)] chunk maxima of pre (the subgroup encoder GEMM's cmax), read by
   * `selectTopKOp` for the first layer where `chunkMaximaServe` (topk, matryoshka, the tree's
   * first layer) instead of a first pass over pre.
   */
  cmax?: GPUBuffer;
  /** The parents' texture mirror (`createParentsTexture`), read instead of `parents` if given. */
  parentsTex?: ParentsTexture;
  /**
   * The tree's children by parent (`childLists` of the same parents, [2n + 1] u32; rewrite it with
   * them): `selectTopKOp` then selects each gated layer after the first from the children of the
   * row's fired parents where they are few, instead of passing over the whole layer.
   */
  children?: GPUBuffer;
}

/**
 * The children of every parent value for `SelectBuffers.children`: [n + 1] start of each value's
 * run, then the n features ordered by parent, ascending within a run (kernels/topk.wgsl
 * CHILD_LISTS). Flat parents as the kernels take them: global indices, a layer's offset = its root.
 */
export function childLists(parents: Int32Array): Uint32Array {
  const n = parents.length;
  const out = new Uint32Array(2 * n + 1);
  for (const p of parents) out[p + 1]++;
  for (let p = 0; p < n; p++) out[p + 1] += out[p];
  const next = out.slice(0, n);
  for (let f = 0; f < n; f++) out[n + 1 + next[parents[f]]++] = f;
  return out;
}

/** Parents per texture row of a parents texture (PARENT_TEX_W texels of four in the WGSL). */
const PARENTS_PER_TEX_ROW = 4096;

/** The tree parents [n] as an rgba32float texture, four per texel (kernels/topk.wgsl PARENTS_TEX). */
export interface ParentsTexture {
  texture: GPUTexture;
  view: GPUTextureView;
  n: number;
}

/**
 * A parents texture for n features (software adapters: the gated selections then fetch four
 * parents per texel gather instead of looping over the lanes for storage loads).
 */
export function createParentsTexture(gpu: Gpu, n: number): ParentsTexture {
  const rows = Math.max(1, Math.ceil(n / PARENTS_PER_TEX_ROW));
  const texture = gpu.device.createTexture({
    label: "parents texture",
    size: kernelTextureExtent(gpu, PARENTS_PER_TEX_ROW / 4, rows),
    format: "rgba32float",
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
  });
  return { texture, view: texture.createView(), n };
}

/** Write the flat parents [n] (global indices, the layer's offset = its root) into the texture. */
export function writeParentsTexture(gpu: Gpu, t: ParentsTexture, parents: Int32Array) {
  if (parents.length !== t.n) {
    throw new ArborError(`parents texture: ${parents.length} parents for a texture of ${t.n}`);
  }
  const rows = Math.max(1, Math.ceil(t.n / PARENTS_PER_TEX_ROW));
  // Exact as floats below 2^24 (far past any dictionary here); the padding is never read.
  const data = new Float32Array(rows * PARENTS_PER_TEX_ROW);
  data.set(parents);
  gpu.device.queue.writeTexture(
    { texture: t.texture },
    data,
    { bytesPerRow: PARENTS_PER_TEX_ROW * 4, rowsPerImage: rows },
    [PARENTS_PER_TEX_ROW / 4, rows, 1],
  );
}

/** Sizes of a selection on one row chunk. */
export interface SelectSizes {
  n: number;
  /** Rows in this chunk. */
  rows: number;
  /** Batch row of the chunk's first row. */
  rowOffset: number;
}

function params(
  gpu: Gpu,
  layout: SelectionLayout,
  sizes: SelectSizes,
  aux: { layer: number; kAux: number },
) {
  const grid = wrapGrid(gpu, sizes.rows);
  const u = sharedUniforms(gpu, {
    rows: sizes.rows,
    n: sizes.n,
    K: slotsPerRow(layout),
    L: layout.sizes.length,
    rowOffset: sizes.rowOffset,
    pad3: 0,
    row_stride: grid.stride,
    auxLayer: aux.layer,
    kAux: aux.kAux,
    pad0: 0,
    pad1: 0,
    pad2: 0,
  });
  return { grid, u };
}

/** The topk.wgsl kernel of an entry point, with the bitset size a layout needs and k's workgroup. */
export function selectKernelFor(
  gpu: Gpu,
  entry: string,
  layout: SelectionLayout,
  preTex = false,
  k = Math.max(...layout.kPerLayer),
  candidates = Infinity,
  cmaxIn = false,
  parentsTex = false,
  childLists = false,
): Kernel {
  const constants = {
    WG: selectionWorkgroup(gpu, k, candidates),
    FIRE_WORDS: fireWords(gpu, layout),
    GATED: layout.gated ? 1 : 0,
    PRE_TEX: preTex ? 1 : 0,
    // Software adapters keep AuxK's keys in private memory (kernels/topk.wgsl, AUX_PRIVATE).
    AUX_PRIVATE: gpu.isFallback && entry === "select_aux" ? 1 : 0,
    CMAX_IN: cmaxIn ? 1 : 0,
    PARENTS_TEX: parentsTex ? 1 : 0,
    CHILD_LISTS: childLists ? 1 : 0,
  };
  return { file: "topk.wgsl", entry, constants };
}

/** The pre texture to bind (the buffers' mirror, else a dummy), checked against the chunk. */
function preTexBinding(gpu: Gpu, buffers: SelectBuffers, sizes: SelectSizes): GPUTextureView {
  const t = buffers.preTex;
  if (!t) return placeholderTexture(gpu, "sampled");
  if (t.n !== sizes.n || t.rows < sizes.rows) {
    throw new ArborError(
      `top-k: the pre texture holds ${t.rows} rows of ${t.n} features; the chunk has ${sizes.rows} of ${sizes.n}`,
    );
  }
  return t.view;
}

/** The parents texture to bind (the buffers' mirror, else a dummy). */
function parentsTexBinding(gpu: Gpu, buffers: { parentsTex?: ParentsTexture }): GPUTextureView {
  return buffers.parentsTex?.view ?? placeholderTexture(gpu, "sampled");
}

/**
 * Dispatches selecting the codes of one row chunk: per layer, the top k_l of pre (gated by the
 * parents' values chosen in earlier layers when `layout.gated`), into slots idx/val [B, K].
 */
export function selectTopKOp(
  gpu: Gpu,
  buffers: SelectBuffers,
  layout: SelectionLayout,
  sizes: SelectSizes,
): Dispatch[] {
  if (sizes.rows === 0) return [];
  checkPreBuffer(buffers.pre, sizes.rows, sizes.n);
  const { grid, u } = params(gpu, layout, sizes, { layer: 0, kAux: 0 });
  // The entry points share helper functions, so each statically uses every binding; placeholders
  // fill the ones this layout leaves unused.
  const parents = layout.gated ? buffers.parents : placeholderBuffer(gpu, "read");
  if (!parents) throw new ArborError("tree selection: the gated layout needs a parents buffer");
  const unused = placeholderBuffer(gpu, "write");
  const cmax = chunkMaximaServe(layout) ? buffers.cmax : undefined;
  if (cmax && cmax.size < sizes.rows * Math.ceil(sizes.n / CHUNK_MAX_FEATURES) * 4) {
    throw new ArborError(
      `top-k: the chunk maxima "${cmax.label}" hold ${cmax.size} bytes; ${sizes.rows} rows of ` +
        `${sizes.n} features need ${sizes.rows * Math.ceil(sizes.n / CHUNK_MAX_FEATURES) * 4}`,
    );
  }
  // The child lists serve gated layers after the first (the first's parents are all the root).
  const children = layout.gated && layout.sizes.length > 1 ? buffers.children : undefined;
  if (children && children.size < (2 * sizes.n + 1) * 4) {
    throw new ArborError(
      `tree selection: the child lists "${children.label}" hold ${children.size} bytes; ` +
        `${sizes.n} features need childLists(parents), ${(2 * sizes.n + 1) * 4} bytes`,
    );
  }
  return [{
    kernel: selectKernelFor(
      gpu,
      "select_topk",
      layout,
      !!buffers.preTex,
      undefined,
      undefined,
      !!cmax,
      !!buffers.parentsTex,
      !!children,
    ),
    buffers: [
      buffers.pre,
      buffers.layerTable,
      parents,
      buffers.idx,
      buffers.val,
      u,
      children ?? placeholderBuffer(gpu, "read"),
      unused,
      unused,
      preTexBinding(gpu, buffers, sizes),
      cmax ?? placeholderBuffer(gpu, "read"),
      parentsTexBinding(gpu, buffers),
    ],
    workgroups: grid.workgroups,
  }];
}

/** Buffers of `selectAuxOp`. */
export interface AuxSelectBuffers extends SelectBuffers {
  /** [n] u32, non-zero = dead feature. */
  dead: GPUBuffer;
  /** [B, kAux] u32 output AuxK slots. */
  auxIdx: GPUBuffer;
  /** [B, kAux] f32 output AuxK values. */
  auxVal: GPUBuffer;
}

/**
 * Dispatches choosing the AuxK codes of one row chunk (kernels/dead_list.wgsl compacts the dead mask
 * into a list first, so the cost follows the number of dead features): among the dead features of
 * layer `auxLayer`
 * (gated layouts: whose parent is the root or fires on the row per idx/val, read here), the top
 * min(kAux, #candidates) pre values, auxVal = max(pre, 0); remaining slots unused.
 */
export function selectAuxOp(
  gpu: Gpu,
  buffers: AuxSelectBuffers,
  layout: SelectionLayout,
  sizes: SelectSizes & {
    auxLayer: number;
    kAux: number;
    /** An upper bound on the dead features (the candidates; picks the workgroup size only). */
    deadBound?: number;
  },
): Dispatch[] {
  if (sizes.kAux < 1 || sizes.kAux > MAX_K_PER_LAYER) {
    throw new ArborError(`AuxK: kAux is ${sizes.kAux}; it must be in [1, ${MAX_K_PER_LAYER}]`);
  }
  if (sizes.rows === 0) return [];
  checkPreBuffer(buffers.pre, sizes.rows, sizes.n);
  const { grid, u } = params(gpu, layout, sizes, { layer: sizes.auxLayer, kAux: sizes.kAux });
  const parents = layout.gated ? buffers.parents : placeholderBuffer(gpu, "read");
  if (!parents) throw new ArborError("tree AuxK: the gated layout needs a parents buffer");
  const list = deadListBuffer(gpu, buffers.dead, sizes.n);
  return [
    // Recomputed per call (one workgroup, n reads): the list must follow the dead mask.
    ...deadListOp(gpu, buffers.dead, list, sizes.n),
    {
      kernel: selectKernelFor(
        gpu,
        "select_aux",
        layout,
        !!buffers.preTex,
        sizes.kAux,
        sizes.deadBound,
        false,
        !!buffers.parentsTex,
      ),
      buffers: [
        buffers.pre,
        buffers.layerTable,
        parents,
        buffers.idx,
        buffers.val,
        u,
        list,
        buffers.auxIdx,
        buffers.auxVal,
        preTexBinding(gpu, buffers, sizes),
        placeholderBuffer(gpu, "read"),
        parentsTexBinding(gpu, buffers),
      ],
      workgroups: grid.workgroups,
    },
  ];
}

const DEAD_LIST: Kernel = { file: "dead_list.wgsl", entry: "dead_list", constants: { WG: 256 } };

/** Dispatch compacting the dead mask [n] into `list` [1 + 2n]: count, dead features, ranks. */
export function deadListOp(gpu: Gpu, dead: GPUBuffer, list: GPUBuffer, n: number): Dispatch[] {
  if (list.size < (1 + 2 * n) * 4) {
    throw new ArborError(`dead list: ${list.size} bytes; n = ${n} needs ${(1 + 2 * n) * 4}`);
  }
  const u = sharedUniforms(gpu, { n, pad0: 0, pad1: 0, pad2: 0 });
  return [{ kernel: DEAD_LIST, buffers: [dead, list, u], workgroups: [1] }];
}
const deadLists = new WeakMap<GPUBuffer, GPUBuffer>();

/**
 * The [1 + 2n] u32 dead-list scratch belonging to a dead-mask buffer (allocated once): after a
 * `selectAuxOp` it holds [count, dead features ascending, rank of every feature] (dead_list.wgsl);
 * `groupSlotsOp` reads the ranks.
 */
export function deadListBuffer(gpu: Gpu, dead: GPUBuffer, n: number): GPUBuffer {
  let list = deadLists.get(dead);
  if (!list || list.size < (1 + 2 * n) * 4) {
    list = createStorage(gpu, (1 + 2 * n) * 4, `${dead.label} list`);
    deadLists.set(dead, list);
  }
  return list;
}
