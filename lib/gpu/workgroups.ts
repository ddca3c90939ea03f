/**
 * Workgroup sizes that suit the adapter. llvmpipe and lavapipe run a workgroup as one job on a
 * CPU thread, its invocations as SIMD lanes in groups of 8 (256-bit vectors), so:
 * - a job has a fixed cost (~2 µs here): an elementwise kernel over millions of elements wants few,
 *   wide workgroups (Adam over a [24 576, 768] encoder: 120 ms with 64 lanes, 71 with 256);
 * - a barrier switches between the workgroup's SIMD groups: a kernel that reduces across its
 *   workgroup wants one SIMD group (the decoder's Adam rows: 220 ms with 64 lanes, 120 with 8; a
 *   per-row top-32: 480–540 ms with 64, 245 with 8). bench/README.md has the measurements.
 * - a dispatch's workgroups are split into one contiguous share per thread, fixed up front (Mesa's
 *   lp_cs_tpool: no thread takes over another's share), so a kernel whose work crowds into one part
 *   of its grid keeps the other threads idle: `dispatchSpread`.
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

/**
 * Software adapters: how many ways a kernel with uneven work per workgroup interleaves its grid
 * (workgroup i takes item (i mod q)·S + i / q, q = ceil(items / S), S this value) so that every
 * thread's contiguous share samples all items. 64 balances any thread count dividing 64 exactly,
 * others within a column's share (the Tree SAE's per-feature gradient sums on lavapipe: 1.14 → 1.87
 * cores busy, 739 → 442 ms; bench/README.md). 1 (no interleaving) on GPUs, which schedule
 * workgroups as they free up.
 */
export function dispatchSpread(gpu: Gpu): number {
  return gpu.isFallback ? SOFT_SPREAD : 1;
}

/** Interleaving width of `dispatchSpread` on software adapters. */
export const SOFT_SPREAD = 64;

/** Workgroups for `items` items interleaved `spread` ways (padded to a multiple of `spread`). */
export function spreadGroups(items: number, spread: number): number {
  return Math.ceil(items / spread) * spread;
}
