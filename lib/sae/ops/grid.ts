/**
 * Shared plumbing of the forward SAE ops: 1-D grids wrapped into 2-D past the
 * per-dimension workgroup limit, and release of the per-call uniform buffers.
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch } from "../../gpu/kernel.ts";
import { runKernels } from "../../gpu/kernel.ts";
import { isSharedUniform } from "../../gpu/shared_uniforms.ts";

/** A 1-D count of workgroups laid out as x·y, with x (= `stride`) ≤ the device limit. */
export interface WrappedGrid {
  /** Workgroups in x and y. */
  workgroups: [number, number];
  /** Workgroups per y step: the kernel's linear id is `wg.y * stride + wg.x`. */
  stride: number;
}

/** Lay out `groups` workgroups as x·y so neither exceeds maxComputeWorkgroupsPerDimension. */
export function wrapGrid(gpu: Gpu, groups: number): WrappedGrid {
  const max = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.max(1, Math.min(groups, max));
  return { workgroups: [groups === 0 ? 0 : x, Math.max(1, Math.ceil(groups / x))], stride: x };
}

/**
 * Destroy the uniform buffers made for `dispatches` alone (call after submitting them; WebGPU
 * defers destruction until the submitted work is done). Shared uniforms are left alone.
 */
export function releaseUniforms(dispatches: Dispatch[]) {
  for (const d of dispatches) {
    for (const b of d.buffers) {
      if (!(b instanceof GPUBuffer) || isSharedUniform(b)) continue;
      if ((b.usage & GPUBufferUsage.UNIFORM) !== 0 && (b.usage & GPUBufferUsage.STORAGE) === 0) {
        b.destroy();
      }
    }
  }
}

/** Run op dispatches in one submit, then release their uniform buffers. */
export async function runOps(gpu: Gpu, dispatches: Dispatch[], label: string) {
  await runKernels(gpu, dispatches, label);
  releaseUniforms(dispatches);
}
