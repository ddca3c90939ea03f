/**
 * Sparse decode on the GPU (kernels/sparse_decode.wgsl): the level reconstructions x̂s_{≤l} of
 * every row from its code slots, and the AuxK reconstruction ê. The sparse path: only the K
 * selected decoder rows of each row are read; no dense [B, n] code matrix exists.
 *
 * Shapes: B rows, d = d_in, n features, K slots per row, L levels.
 *   idx [B, K] u32, val [B, K] f32, decW [n, d], bDec [d], levelBounds [L] u32 → out [L, B, d].
 * Levels (Arbor SAE contract): topk / batchtopk one level (all slots); tree: level l = slots of
 * layers ≤ l (bounds = cumulative k_l, by slot position); matryoshka: level l = slots whose feature
 * is below the prefix end o_l + s_l (bounds by feature index).
 *
 * On software adapters with d % 64 == 0 and slot-range levels, `textureDecodeOp` reads decW through
 * a texture mirror (lib/sae/ops/matrix_texture.ts: copy decW into it after every optimiser step),
 * ~1.15× faster there than `sparseDecodeOp` (measured at B = 4096, d = 768: 0.44 → 0.39 CPU-s for
 * 32 slots, 2.9 → 2.4 for AuxK's 256).
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { uploadStorage } from "../../gpu/buffer.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { ArborError } from "../../errors.ts";
import { type MatrixTexture, matrixTextureView } from "./matrix_texture.ts";
import type { SlotBlocks } from "./slot_blocks.ts";

/** Invocations per workgroup (columns of one row). */
const WG = 64;
/** Most levels the kernel accumulates (MAX_LEVELS in the WGSL). */
export const MAX_LEVELS = 8;
const KERNEL: Kernel = { file: "sparse_decode.wgsl", entry: "decode_levels", constants: { WG } };
const KERNEL4: Kernel = { file: "sparse_decode.wgsl", entry: "decode_levels4", constants: { WG } };
/**
 * A kernel of the 16-columns-per-invocation family: contiguous columns per invocation on software
 * adapters (CONTIG, for the CPU caches), interleaved across invocations on GPUs (coalescing).
 */
function kernel16(gpu: Gpu, entry: string): Kernel {
  return { file: "sparse_decode.wgsl", entry, constants: { WG, CONTIG: gpu.isFallback ? 1 : 0 } };
}

/** How slots map to levels: by slot position (topk, batchtopk, tree) or by feature index (matryoshka). */
export type LevelMode = "slot" | "feature";

/** Level bounds for the contract's architectures. */
export interface LevelPlan {
  mode: LevelMode;
  /** Ascending level ends: cumulative k (mode "slot") or prefix ends o_l + s_l (mode "feature"). */
  bounds: number[];
}

/** Levels of a tree: level l holds the slots of layers ≤ l (bounds = cumulative k_l). */
export function treeLevels(kPerLayer: number[]): LevelPlan {
  let c = 0;
  return { mode: "slot", bounds: kPerLayer.map((k) => (c += k)) };
}

/** Levels of a matryoshka SAE: level l holds the slots whose feature lies in the prefix of layers ≤ l. */
export function matryoshkaLevels(layerSizes: number[]): LevelPlan {
  let c = 0;
  return { mode: "feature", bounds: layerSizes.map((s) => (c += s)) };
}

/** One level holding all K slots (topk, batchtopk, AuxK). */
export function singleLevel(K: number): LevelPlan {
  return { mode: "slot", bounds: [K] };
}

/** Upload a plan's bounds as the u32 [L] buffer the kernel reads. */
export function createLevelBounds(gpu: Gpu, plan: LevelPlan, label = "level bounds"): GPUBuffer {
  if (plan.bounds.length < 1 || plan.bounds.length > MAX_LEVELS) {
    throw new ArborError(
      `sparse decode: ${plan.bounds.length} levels; the kernel supports 1 to ${MAX_LEVELS} layers`,
    );
  }
  return uploadStorage(gpu, new Uint32Array(plan.bounds), label);
}

/** Buffers of `sparseDecodeOp`. */
export interface SparseDecodeBuffers {
  /** [B, K] u32 feature per slot. */
  idx: GPUBuffer;
  /** [B, K] f32 value per slot. */
  val: GPUBuffer;
  /** [n, d] decoder rows. */
  decW: GPUBuffer;
  /** [d] decoder bias (bound even when `withBias` is false). */
  bDec: GPUBuffer;
  /** From `createLevelBounds`, [L] u32. */
  levelBounds: GPUBuffer;
  /** [L, B, d] output reconstructions. */
  out: GPUBuffer;
}

/** Sizes of `sparseDecodeOp`. */
export interface SparseDecodeSizes {
  B: number;
  d: number;
  K: number;
  /** The plan the bounds buffer was made from (its mode and L). */
  plan: LevelPlan;
  /** Add bDec (level reconstructions: true; AuxK ê: false). */
  withBias: boolean;
}

/** Dispatches writing out[l] = bias + Σ_{slots of level ≤ l} val·decW[idx] for every row. */
export function sparseDecodeOp(
  gpu: Gpu,
  buffers: SparseDecodeBuffers,
  sizes: SparseDecodeSizes,
): Dispatch[] {
  const { B, d, K, plan } = sizes;
  if (B === 0 || d === 0) return [];
  const u = sharedUniforms(gpu, {
    B,
    d,
    K,
    L: plan.bounds.length,
    mode: plan.mode === "feature" ? 1 : 0,
    withBias: sizes.withBias ? 1 : 0,
    block: 0,
    nBlocks: 0,
  });
  const bound = [
    buffers.idx,
    buffers.val,
    buffers.decW,
    buffers.bDec,
    buffers.levelBounds,
    buffers.out,
    u,
  ];
  if (d % 4 === 0 && plan.mode === "slot") {
    // Levels are slot ranges: one running sum, 16 columns per invocation.
    return [{
      kernel: kernel16(gpu, "decode_slots16"),
      buffers: bound,
      workgroups: [Math.ceil(Math.ceil(d / 16) / WG), B],
    }];
  }
  if (d % 4 === 0) {
    // Four columns per invocation with vec4 loads, the row's slots staged in workgroup memory.
    return [{ kernel: KERNEL4, buffers: bound, workgroups: [Math.ceil(d / (4 * WG)), B] }];
  }
  return [{ kernel: KERNEL, buffers: bound, workgroups: [Math.ceil(d / WG), B] }];
}

/**
 * Whether every level of a slot plan spans whole groups of four slots (K % 4 == 0, every level end
 * min(bound, K) a multiple of 4): then the texture decode reads the slots as vec4s.
 */
export function slotsInFours(K: number, plan: LevelPlan): boolean {
  return K % 4 === 0 && plan.bounds.every((e) => Math.min(e, K) % 4 === 0);
}

/**
 * The decode that reads decW from its texture mirror `decT` ([n, d], copied from decW after every
 * change). Same outputs as `sparseDecodeOp`, for either level plan; needs d % 64 == 0.
 */
export function textureDecodeOp(
  gpu: Gpu,
  decT: MatrixTexture,
  buffers: Omit<SparseDecodeBuffers, "decW">,
  sizes: SparseDecodeSizes,
): Dispatch[] {
  const { B, d, K, plan } = sizes;
  if (d !== decT.d) {
    throw new ArborError(
      `sparse decode (texture): the texture holds rows of ${decT.d}, the decode ${d}; use ` +
        `sparseDecodeOp`,
    );
  }
  if (B === 0) return [];
  // Slot-range levels keep one running sum per column; feature levels (matryoshka) one per level.
  const entry = plan.mode === "feature"
    ? "decode_levels16_tex"
    : slotsInFours(K, plan)
    ? "decode_slots16_tex4"
    : "decode_slots16_tex";
  const base = kernel16(gpu, entry);
  // decode_levels16_tex keeps one running sum per level: compiled for this plan's L.
  const kernel = plan.mode === "feature"
    ? { ...base, constants: { ...base.constants, LEVELS: plan.bounds.length } }
    : base;
  return [{
    kernel,
    buffers: [
      buffers.idx,
      buffers.val,
      matrixTextureView(decT),
      buffers.bDec,
      buffers.levelBounds,
      buffers.out,
      sharedUniforms(gpu, {
        B,
        d,
        K,
        L: plan.bounds.length,
        mode: plan.mode === "feature" ? 1 : 0,
        withBias: sizes.withBias ? 1 : 0,
        block: 0,
        nBlocks: 0,
      }),
    ],
    workgroups: [Math.ceil(Math.ceil(d / 16) / WG), B],
  }];
}

/**
 * Dispatches of the single-level texture decode of rows regrouped by `groupSlotsOp` (`starts` is
 * its [B, nb + 1] output): one per block, in block order, so that every row reads the
 * decoder rows of one block at a time (cache-sized on software adapters). Same result as
 * `textureDecodeOp` over the regrouped rows; needs d % 64 == 0. `upTo` (default all nb): dispatch
 * blocks [0, upTo) only, for a caller that knows no row has slots in later blocks.
 */
export function blockedTextureDecodeOp(
  gpu: Gpu,
  decT: MatrixTexture,
  buffers: Omit<SparseDecodeBuffers, "decW" | "levelBounds"> & { starts: GPUBuffer },
  sizes: Omit<SparseDecodeSizes, "plan"> & { blocks: SlotBlocks; upTo?: number },
): Dispatch[] {
  const { B, d, K, blocks } = sizes;
  const upTo = sizes.upTo ?? blocks.nb;
  if (!Number.isInteger(upTo) || upTo < 1 || upTo > blocks.nb) {
    throw new ArborError(`sparse decode (blocked texture): upTo = ${upTo}; need 1..${blocks.nb}`);
  }
  if (d !== decT.d) {
    throw new ArborError(
      `sparse decode (blocked texture): d = ${d} but the texture is ${decT.d} wide`,
    );
  }
  if (B === 0) return [];
  const view = matrixTextureView(decT);
  return Array.from({ length: upTo }, (_, block) => ({
    kernel: kernel16(gpu, "decode_blocks16_tex"),
    buffers: [
      buffers.idx,
      buffers.val,
      view,
      buffers.bDec,
      buffers.starts,
      buffers.out,
      sharedUniforms(gpu, {
        B,
        d,
        K,
        L: 1,
        mode: 0,
        withBias: sizes.withBias ? 1 : 0,
        block,
        nBlocks: blocks.nb,
      }),
    ],
    workgroups: [Math.ceil(Math.ceil(d / 16) / WG), B],
  }));
}
