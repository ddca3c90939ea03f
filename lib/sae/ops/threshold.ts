/**
 * BatchTopK inference on the GPU (kernels/threshold_filter.wgsl): after a per-row top-K of the
 * pre-activations, clear every slot whose value is not above the learned threshold θ.
 *
 * Shapes: idx [B, K] u32, val [B, K] f32 (K = min(n, 4k) slots per row).
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { wrapGrid } from "./grid.ts";

/** Invocations per workgroup (one per slot). */
const WG = 256;
const KERNEL: Kernel = { file: "threshold_filter.wgsl", entry: "main", constants: { WG } };

/** Dispatch clearing the slots of `idx`/`val` ([B, K]) whose value is ≤ `theta`. */
export function thresholdFilterOp(
  gpu: Gpu,
  buffers: { idx: GPUBuffer; val: GPUBuffer },
  sizes: { B: number; K: number; theta: number },
): Dispatch[] {
  const total = sizes.B * sizes.K;
  if (total === 0) return [];
  const grid = wrapGrid(gpu, Math.ceil(total / WG));
  const u = sharedUniforms(gpu, { total, theta: sizes.theta, stride: grid.stride * WG }, ["theta"]);
  return [{ kernel: KERNEL, buffers: [buffers.idx, buffers.val, u], workgroups: grid.workgroups }];
}
