/**
 * The optimiser step on the GPU (kernels/adam.wgsl): decoder rows get the parallel gradient
 * component removed, Adam, and renormalisation to unit norm; encoder and b_dec get plain Adam.
 * Every gradient buffer is zeroed as it is consumed, ready for the next sparse backward pass.
 *
 * Shapes: decW, encW, their grads and moments [n, d]; bDec, its grad and moments [d]. f32.
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { ADAM_BETA1, ADAM_BETA2, ADAM_EPS } from "../reference/constants.ts";
import { wrapGrid } from "./grid.ts";
import { placeholderTexture } from "../../gpu/texture.ts";
import { elementwiseWorkgroup, reducingWorkgroup } from "../../gpu/workgroups.ts";

/** Invocations per workgroup on GPUs (a power of two: adam_rows reduces by halving). */
const WG_GPU = 64;

function kernel(entry: string, WG: number, tex = false): Kernel {
  return { file: "adam.wgsl", entry, constants: tex ? { WG, ADAM_TEX: 1 } : { WG } };
}

/**
 * Bindings of an update: the tensor and its uniforms; the vec4 entries also declare the parameters'
 * texture (binding 5), a placeholder where there is none.
 */
function bindings(
  gpu: Gpu,
  t: AdamTensor,
  u: GPUBuffer,
  vec: number,
): (GPUBuffer | GPUTextureView)[] {
  const base = [t.param, t.grad, t.m, t.v, u];
  return vec === 4 ? [...base, t.paramTex?.view ?? placeholderTexture(gpu, "sampled-array")] : base;
}

/**
 * Workgroup sizes of the dense and row updates on this adapter (software adapters: 256 and 8 lanes;
 * the row update reduces across its workgroup, lib/gpu/workgroups.ts).
 */
function workgroupSizes(gpu: Gpu): { dense: number; rows: number } {
  return { dense: elementwiseWorkgroup(gpu, WG_GPU), rows: reducingWorkgroup(gpu, WG_GPU) };
}

/** One parameter tensor with its gradient and Adam moments. */
export interface AdamTensor {
  param: GPUBuffer;
  grad: GPUBuffer;
  m: GPUBuffer;
  v: GPUBuffer;
  /**
   * The parameters before the step as a matrix texture of rows of `cols` floats
   * (lib/sae/ops/matrix_texture.ts), which the vec4 kernels then read instead of `param`
   * (software adapters: a texel fetch gathers across the SIMD lanes, a storage load loops).
   */
  paramTex?: { view: GPUTextureView; cols: number };
}

/** Adam hyper-parameters of one step; t is the 1-based step number (bias correction). */
export interface AdamStep {
  lr: number;
  t: number;
}

function params(
  gpu: Gpu,
  fields: { len: number; rows: number; cols: number; row_stride: number },
  s: AdamStep,
) {
  return sharedUniforms(
    gpu,
    {
      ...fields,
      lr: s.lr,
      beta1: ADAM_BETA1,
      beta2: ADAM_BETA2,
      eps: ADAM_EPS,
      bc1: 1 - ADAM_BETA1 ** s.t,
      bc2: 1 - ADAM_BETA2 ** s.t,
      _p0: 0,
      _p1: 0,
    },
    ["lr", "beta1", "beta2", "eps", "bc1", "bc2"],
  );
}

/** Dispatches of dense Adam on a flat tensor of `len` floats (grad zeroed afterwards). */
export function adamDenseOp(gpu: Gpu, t: AdamTensor, len: number, step: AdamStep): Dispatch[] {
  const vec = len % 4 === 0 ? 4 : 1; // vec4 loads when the length allows
  const units = len / vec;
  const WG = workgroupSizes(gpu).dense;
  const grid = wrapGrid(gpu, Math.ceil(units / WG));
  const tex = vec === 4 && !!t.paramTex;
  // With the texture, cols = vec4s per texture row (the kernel's row of element i is i / cols).
  const cols = tex ? t.paramTex!.cols / 4 : 0;
  const u = params(gpu, { len: units, rows: 0, cols, row_stride: grid.stride * WG }, step);
  return [{
    kernel: kernel(vec === 4 ? "adam_dense4" : "adam_dense", WG, tex),
    buffers: bindings(gpu, t, u, vec),
    workgroups: grid.workgroups,
  }];
}

/**
 * Dispatches of the decoder update on [rows, cols]: remove each row's gradient component along
 * the row, Adam, renormalise the row to unit L2 norm, zero the gradient.
 */
export function adamDecoderRowsOp(
  gpu: Gpu,
  t: AdamTensor,
  rows: number,
  cols: number,
  step: AdamStep,
): Dispatch[] {
  const vec = cols % 4 === 0 ? 4 : 1; // vec4 loads when the row width allows
  const grid = wrapGrid(gpu, rows);
  const u = params(gpu, {
    len: (rows * cols) / vec,
    rows,
    cols: cols / vec,
    row_stride: grid.stride,
  }, step);
  const tex = vec === 4 && !!t.paramTex;
  return [{
    kernel: kernel(vec === 4 ? "adam_rows4" : "adam_rows", workgroupSizes(gpu).rows, tex),
    buffers: bindings(gpu, t, u, vec),
    workgroups: grid.workgroups,
  }];
}
