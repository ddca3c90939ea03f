/**
 * Per-token standardisation on the GPU (kernels/standardize.wgsl).
 *
 * Shapes: B rows (tokens), d columns. x, xs, xhs, out: [B, d] f32; mean, std: [B] f32.
 * xs = (x − mean_b) / (std_b + 1e-5); the inverse maps x̂s back to x̂ = x̂s·(std_b + 1e-5) + mean_b.
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { wrapGrid } from "./grid.ts";
import { elementwiseWorkgroup, reducingWorkgroup } from "../../gpu/workgroups.ts";

/** Invocations per workgroup on GPUs (one workgroup per row for `standardize`). */
const WG_GPU = 64;

/** `standardize` reduces each row across its workgroup; `unstandardize` is elementwise. */
function kernel(gpu: Gpu, entry: "standardize" | "standardize4" | "unstandardize"): Kernel {
  const WG = entry === "unstandardize"
    ? elementwiseWorkgroup(gpu, WG_GPU)
    : reducingWorkgroup(gpu, WG_GPU);
  return { file: "standardize.wgsl", entry, constants: { WG } };
}

/** Buffers of `standardizeOp`. */
export interface StandardizeBuffers {
  /** [B, d] raw activations. */
  x: GPUBuffer;
  /** [B, d] output: standardised activations. */
  xs: GPUBuffer;
  /** [B] output: per-row mean. */
  mean: GPUBuffer;
  /** [B] output: per-row std (population). */
  std: GPUBuffer;
}

/** Dispatches standardising B rows of width d: xs, mean, std from x. */
export function standardizeOp(
  gpu: Gpu,
  buffers: StandardizeBuffers,
  sizes: { B: number; d: number },
): Dispatch[] {
  const grid = wrapGrid(gpu, sizes.B);
  const u = sharedUniforms(gpu, { B: sizes.B, d: sizes.d, row_stride: grid.stride, pad: 0 });
  return [{
    // Four columns per load where rows are whole vec4s.
    kernel: kernel(gpu, sizes.d % 4 === 0 ? "standardize4" : "standardize"),
    buffers: [buffers.x, buffers.xs, buffers.mean, buffers.std, u],
    workgroups: grid.workgroups,
  }];
}

/** Buffers of `unstandardizeOp`. */
export interface UnstandardizeBuffers {
  /** [B, d] reconstruction in standardised space. */
  xhs: GPUBuffer;
  /** [B, d] output: reconstruction in raw activation space (may not alias xhs). */
  out: GPUBuffer;
  /** [B] per-row mean from `standardizeOp`. */
  mean: GPUBuffer;
  /** [B] per-row std from `standardizeOp`. */
  std: GPUBuffer;
}

/** Dispatches mapping x̂s back to raw space: out = xhs·(std_b + 1e-5) + mean_b. */
export function unstandardizeOp(
  gpu: Gpu,
  buffers: UnstandardizeBuffers,
  sizes: { B: number; d: number },
): Dispatch[] {
  const k = kernel(gpu, "unstandardize");
  const grid = wrapGrid(gpu, Math.ceil((sizes.B * sizes.d) / k.constants!.WG));
  const u = sharedUniforms(gpu, { B: sizes.B, d: sizes.d, row_stride: grid.stride, pad: 0 });
  return [{
    kernel: k,
    buffers: [buffers.xhs, buffers.out, buffers.mean, buffers.std, u],
    workgroups: grid.workgroups,
  }];
}
