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

/** Invocations per workgroup (a power of two: adam_rows reduces by halving). */
const WG = 64;
const DENSE: Kernel = { file: "adam.wgsl", entry: "adam_dense", constants: { WG } };
const ROWS: Kernel = { file: "adam.wgsl", entry: "adam_rows", constants: { WG } };
const DENSE4: Kernel = { file: "adam.wgsl", entry: "adam_dense4", constants: { WG } };
const ROWS4: Kernel = { file: "adam.wgsl", entry: "adam_rows4", constants: { WG } };
/** The kernels of this op, for compiling ahead of the first step. */
export const ADAM_KERNELS: Kernel[] = [DENSE, ROWS, DENSE4, ROWS4];

/** One parameter tensor with its gradient and Adam moments. */
export interface AdamTensor {
  param: GPUBuffer;
  grad: GPUBuffer;
  m: GPUBuffer;
  v: GPUBuffer;
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
  const grid = wrapGrid(gpu, Math.ceil(units / WG));
  const u = params(gpu, { len: units, rows: 0, cols: 0, row_stride: grid.stride * WG }, step);
  const kernel = vec === 4 ? DENSE4 : DENSE;
  return [{ kernel, buffers: [t.param, t.grad, t.m, t.v, u], workgroups: grid.workgroups }];
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
  const kernel = vec === 4 ? ROWS4 : ROWS;
  return [{ kernel, buffers: [t.param, t.grad, t.m, t.v, u], workgroups: grid.workgroups }];
}
