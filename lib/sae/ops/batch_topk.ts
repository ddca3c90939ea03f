/**
 * BatchTopK training selection on the GPU (kernels/batch_topk.wgsl + topk.wgsl's select_batch): the
 * k·B largest max(pre, 0) over the batch (ties → lower row, then lower index), each row keeping at
 * most K of its winners (its K largest), and the smallest kept positive value for the threshold EMA.
 *
 * Shapes: B rows, n features, K slots per row (contract: K = min(n, 4k)).
 *   pre chunks [rows, n] covering all B rows, idx [B, K] u32, val [B, K] f32, minKept [1] f32.
 * The threshold is exact over the whole batch, so every pre chunk must still be resident (or be
 * recomputed) while these dispatches run: they read each chunk five to eight times.
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { createStorage, placeholderBuffer } from "../../gpu/buffer.ts";
import { placeholderTexture } from "../../gpu/texture.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { ArborError } from "../../errors.ts";
import { wrapGrid } from "./grid.ts";
import { checkPreBuffer, selectKernelFor } from "./topk.ts";

/** Invocations per workgroup. */
const WG = 64;
const kernel = (entry: string, constants = true): Kernel => ({
  file: "batch_topk.wgsl",
  entry,
  ...(constants ? { constants: { WG } } : {}),
});

/** Scratch buffers of a BatchTopK selection (reusable across steps of the same B). */
export interface BatchTopKScratch {
  /** [8] u32 radix state. */
  state: GPUBuffer;
  /** [256] u32 batch histogram. */
  ghist: GPUBuffer;
  /** [2, B] u32 per-row counts. */
  rowCnt: GPUBuffer;
  /** [1 + B] u32: threshold key, then slots per row. */
  info: GPUBuffer;
}

/** Allocate the scratch buffers for batches of B rows. */
export function createBatchTopKScratch(gpu: Gpu, B: number): BatchTopKScratch {
  return {
    state: createStorage(gpu, 8 * 4, "batchtopk state"),
    ghist: createStorage(gpu, 256 * 4, "batchtopk histogram"),
    rowCnt: createStorage(gpu, 2 * B * 4, "batchtopk row counts"),
    info: createStorage(gpu, (1 + B) * 4, "batchtopk row slots"),
  };
}

/** A resident chunk of pre: batch rows rowOffset..rowOffset+rows−1 (allocated with preChunkBytes). */
export interface PreChunk {
  /** [rows, n] pre-activations. */
  pre: GPUBuffer;
  rows: number;
  rowOffset: number;
}

/** Buffers of `batchTopKOp`. */
export interface BatchTopKBuffers {
  /** Chunks covering all B rows. */
  chunks: PreChunk[];
  /** One-layer table {sizes: [n], kPerLayer: [K]} from `createLayerTable`. */
  layerTable: GPUBuffer;
  /** [B, K] output slots. */
  idx: GPUBuffer;
  /** [B, K] output values. */
  val: GPUBuffer;
  /** [1] f32 output: smallest kept value > 0 (0 when none). */
  minKept: GPUBuffer;
  scratch: BatchTopKScratch;
}

/** Dispatches selecting the BatchTopK training codes of a batch (see the module doc). */
export function batchTopKOp(
  gpu: Gpu,
  buffers: BatchTopKBuffers,
  sizes: { B: number; n: number; k: number; K: number },
): Dispatch[] {
  const { B, n, k, K } = sizes;
  const covered = buffers.chunks.reduce((a, c) => a + c.rows, 0);
  if (covered !== B) {
    throw new ArborError(
      `BatchTopK: the pre chunks cover ${covered} rows but the batch has ${B}; pass every chunk`,
    );
  }
  if (K < 1 || K > 256 || K > n) {
    throw new ArborError(`BatchTopK: K = ${K} slots per row; it must be in [1, min(n, 256)]`);
  }
  for (const c of buffers.chunks) checkPreBuffer(c.pre, c.rows, n);
  const want = Math.min(k * B, B * n);
  const { state, ghist, rowCnt, info } = buffers.scratch;
  const params = (chunk: PreChunk | null, pass: number) => {
    const grid = wrapGrid(gpu, chunk?.rows ?? 1);
    const u = sharedUniforms(gpu, {
      rows: chunk?.rows ?? 0,
      n,
      B,
      K,
      rowOffset: chunk?.rowOffset ?? 0,
      want,
      pass,
      row_stride: grid.stride,
    });
    return { grid, u };
  };
  const out: Dispatch[] = [];
  // Every batch_topk entry binds the same six buffers; single-invocation ones bind any chunk's pre.
  const bind = (pre: GPUBuffer, u: GPUBuffer) => [pre, state, ghist, rowCnt, info, u];
  const anyPre = buffers.chunks[0].pre;
  const fixed = (entry: string, pass: number): Dispatch => {
    const { u } = params(null, pass);
    return { kernel: kernel(entry, false), buffers: bind(anyPre, u), workgroups: [1] };
  };
  out.push(fixed("bt_init", 0));
  for (let pass = 0; pass < 4; pass++) {
    for (const chunk of buffers.chunks) {
      const { grid, u } = params(chunk, pass);
      out.push({
        kernel: kernel("bt_hist"),
        buffers: bind(chunk.pre, u),
        workgroups: grid.workgroups,
      });
    }
    out.push(fixed("bt_resolve", pass));
  }
  for (const chunk of buffers.chunks) {
    const { grid, u } = params(chunk, 0);
    out.push({
      kernel: kernel("bt_count"),
      buffers: bind(chunk.pre, u),
      workgroups: grid.workgroups,
    });
  }
  out.push(fixed("bt_rows", 0));
  const layout = { sizes: [n], kPerLayer: [K], gated: false };
  for (const chunk of buffers.chunks) {
    const grid = wrapGrid(gpu, chunk.rows);
    const u = sharedUniforms(gpu, {
      rows: chunk.rows,
      n,
      K,
      L: 1,
      rowOffset: chunk.rowOffset,
      pad3: 0,
      row_stride: grid.stride,
      auxLayer: 0,
      kAux: 0,
      pad0: 0,
      pad1: 0,
      pad2: 0,
    });
    const unused = placeholderBuffer(gpu, "write");
    out.push({
      kernel: selectKernelFor(gpu, "select_batch", layout),
      buffers: [
        chunk.pre,
        buffers.layerTable,
        placeholderBuffer(gpu, "read"),
        buffers.idx,
        buffers.val,
        u,
        info,
        unused,
        unused,
        placeholderTexture(gpu, "sampled"),
        placeholderBuffer(gpu, "read"),
        placeholderTexture(gpu, "sampled"),
      ],
      workgroups: grid.workgroups,
    });
  }
  const um = sharedUniforms(gpu, { count: B * K, pad0: 0, pad1: 0, pad2: 0 });
  out.push({
    kernel: kernel("bt_min_kept"),
    buffers: [buffers.val, buffers.minKept, um],
    workgroups: [1],
  });
  return out;
}
