/**
 * The encoder GEMM on the GPU (kernels/encoder_gemm.wgsl): pre = (xs − bDec)·encWᵀ for a chunk
 * of batch rows.
 *
 * Shapes: B batch rows, d = d_in, n features.
 *   xs [B, d], encW [n, d], bDec [d]  →  pre [rows, n] holding batch rows rowOffset..rowOffset+rows−1.
 * A [4096, 24576] f32 pre is 402 MB, over the 128 MiB binding limit of the software drivers, so big
 * batches go through in row chunks (`maxGemmChunkRows`).
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { uniforms } from "../../gpu/buffer.ts";
import { GpuError } from "../../errors.ts";

/**
 * GEMM variants: "blocked" = one invocation owns a 32×32 block read straight from storage (best on
 * llvmpipe/lavapipe, DESIGN §2); "tiled" = 64×64 workgroup-memory tiles (real GPUs).
 */
export type GemmVariant = "blocked" | "tiled";

/** Register block of one invocation in the blocked variant (TM = TN in the WGSL). */
const BLOCK = 32;
/** Blocked variant's workgroup: WGN invocations along features × WGM along rows (128×512 tile). */
const WGN = 16;
const WGM = 4;
/** Tile of the shared-memory variant (BM = BN in the WGSL). */
const TILE = 64;

/** The variant suited to an adapter: register blocks on software drivers, tiles on real GPUs. */
export function defaultGemmVariant(gpu: Gpu): GemmVariant {
  return gpu.isFallback ? "blocked" : "tiled";
}

/** Largest row chunk whose pre [rows, n] fits one storage binding. */
export function maxGemmChunkRows(gpu: Gpu, n: number): number {
  return Math.floor(gpu.device.limits.maxStorageBufferBindingSize / (4 * n));
}

/** Buffers of `encoderGemmOp`. */
export interface EncoderGemmBuffers {
  /** [B, d] standardised activations (the whole batch). */
  xs: GPUBuffer;
  /** [n, d] encoder rows. */
  encW: GPUBuffer;
  /** [d] decoder bias, subtracted from xs. */
  bDec: GPUBuffer;
  /** [rows, n] output chunk. */
  pre: GPUBuffer;
}

/** Sizes of `encoderGemmOp`: the chunk is batch rows rowOffset..rowOffset+rows−1. */
export interface EncoderGemmSizes {
  d: number;
  n: number;
  rows: number;
  rowOffset: number;
  /** Defaults to `defaultGemmVariant(gpu)`. */
  variant?: GemmVariant;
}

/** The kernel a variant runs for width d (vec4 loads when d is a multiple of 4). */
export function gemmKernel(variant: GemmVariant, d: number): Kernel {
  if (variant === "tiled") return { file: "encoder_gemm.wgsl", entry: "gemm_tiled" };
  const entry = d % 4 === 0 ? "gemm_blocked_vec4" : "gemm_blocked";
  return { file: "encoder_gemm.wgsl", entry, constants: { WGN, WGM } };
}

/** Dispatches computing one row chunk of pre = (xs − bDec)·encWᵀ. */
export function encoderGemmOp(
  gpu: Gpu,
  buffers: EncoderGemmBuffers,
  sizes: EncoderGemmSizes,
): Dispatch[] {
  const { d, n, rows, rowOffset } = sizes;
  const variant = sizes.variant ?? defaultGemmVariant(gpu);
  const limit = maxGemmChunkRows(gpu, n);
  if (rows > limit) {
    throw new GpuError(
      `encoder GEMM: a chunk of ${rows} rows × ${n} features exceeds the adapter's storage binding ` +
        `limit; process the batch in chunks of at most ${limit} rows (maxGemmChunkRows)`,
    );
  }
  if (rows === 0 || n === 0) return [];
  const u = uniforms(gpu, { rows, d, n, rowOffset });
  const workgroups: [number, number] = variant === "tiled"
    ? [Math.ceil(n / TILE), Math.ceil(rows / TILE)]
    : [Math.ceil(n / (WGN * BLOCK)), Math.ceil(rows / (WGM * BLOCK))];
  return [{
    kernel: gemmKernel(variant, d),
    buffers: [buffers.xs, buffers.encW, buffers.bDec, buffers.pre, u],
    workgroups,
  }];
}
