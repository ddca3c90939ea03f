/**
 * Workgroup sizes that suit the adapter. llvmpipe and lavapipe run a workgroup as one job on a
 * CPU thread, its invocations as SIMD lanes in groups of 8 (256-bit vectors), so:
 * - a job has a fixed cost (~2 µs here): an elementwise kernel over millions of elements wants few,
 *   wide workgroups (Adam over a [24 576, 768] encoder: 120 ms with 64 lanes, 71 with 256);
 * - a barrier switches between the workgroup's SIMD groups: a kernel that reduces across its
 *   workgroup wants one SIMD group (the decoder's Adam rows: 220 ms with 64 lanes, 120 with 8; a
 *   per-row top-32: 480–540 ms with 64, 245 with 8). bench/README.md has the measurements.
 * GPUs keep the sizes the kernels were written for.
 */
import type { Gpu } from "./device.ts";

/** One SIMD group of llvmpipe (256-bit vectors of f32). */
export const SOFT_SIMD_LANES = 8;
/** Lanes per workgroup of elementwise kernels on software adapters. */
export const SOFT_ELEMENTWISE_LANES = 256;

/** Workgroup size of a kernel that reduces across its workgroup (a power of two). */
export function reducingWorkgroup(gpu: Gpu, onGpu: number): number {
  return gpu.isFallback ? SOFT_SIMD_LANES : onGpu;
}

/** Workgroup size of an elementwise kernel (a power of two). */
export function elementwiseWorkgroup(gpu: Gpu, onGpu: number): number {
  return gpu.isFallback ? SOFT_ELEMENTWISE_LANES : onGpu;
}
