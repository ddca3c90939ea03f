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
import {
  createMatrixTexture,
  encodeMatrixTextureCopy,
  type MatrixTexture,
  matrixTextureView,
} from "./matrix_texture.ts";
import { elementwiseWorkgroup, reducingWorkgroup } from "../../gpu/workgroups.ts";

/** Invocations per workgroup on GPUs (a power of two: adam_rows reduces by halving). */
const WG_GPU = 64;

function kernel(entry: string, WG: number, tex = false): Kernel {
  return { file: "adam.wgsl", entry, constants: tex ? { WG, ADAM_TEX: 1 } : { WG } };
}

/**
 * Bindings of an update: the tensor and its uniforms; the vec4 entries also declare the textures of
 * the values before the step (bindings 5-8), placeholders where there are none.
 */
function bindings(
  gpu: Gpu,
  t: AdamTensor,
  u: GPUBuffer,
  vec: number,
  tex?: AdamTextures,
): (GPUBuffer | GPUTextureView)[] {
  const base = [t.param, t.grad, t.m, t.v, u];
  if (vec !== 4) return base;
  const none = placeholderTexture(gpu, "sampled-array");
  return [...base, ...(tex ? [tex.param, ...tex.scratch.views] : [none, none, none, none])];
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
}

/**
 * What the textured update reads (software adapters: a texel fetch gathers across the SIMD lanes,
 * a storage load loops over them, and stores are cheap): the parameters before the step as a
 * matrix texture of rows of `cols` floats (lib/sae/ops/matrix_texture.ts; the forward's mirror),
 * and a scratch the host copies each chunk's grad, m and v rows into before its dispatch.
 */
export interface AdamTextures {
  param: GPUTextureView;
  scratch: AdamScratch;
}

/** Matrix textures of `rows` rows for one chunk's grad, m and v (views in that order). */
export interface AdamScratch {
  rows: number;
  textures: [MatrixTexture, MatrixTexture, MatrixTexture];
  views: [GPUTextureView, GPUTextureView, GPUTextureView];
}

/**
 * Rows per chunk of the textured update: a chunk's grad, m and v (3 × 6 MB at d = 768) then stay in
 * the CPU caches from their copy to the kernel's reads (on an EPYC VM at n = 24 576, the encoder's
 * update took ~250 ms in chunks of 8 192 rows, ~150 ms of 4 096 and ~115 ms of 2 048).
 */
export const ADAM_CHUNK_ROWS = 2048;

/** The scratch of the textured update for rows of `cols` floats, `rows` rows per chunk. */
export function createAdamScratch(gpu: Gpu, cols: number, rows = ADAM_CHUNK_ROWS): AdamScratch {
  const make = (what: string) => createMatrixTexture(gpu, rows, cols, `Adam scratch ${what}`);
  const textures: AdamScratch["textures"] = [make("grad"), make("m"), make("v")];
  return { rows, textures, views: textures.map(matrixTextureView) as AdamScratch["views"] };
}

/** Free the scratch's textures. */
export function destroyAdamScratch(s: AdamScratch) {
  for (const t of s.textures) t.texture.destroy();
}

/** One chunk of the textured update: the copy of its grad, m and v rows, then its dispatches. */
export interface AdamChunk {
  copy: (encoder: GPUCommandEncoder) => void;
  dispatches: Dispatch[];
}

/**
 * The update of a [rows, cols] tensor through textures, chunk by chunk (cols % 64 == 0): the
 * decoder update (`decoder`, as `adamDecoderRowsOp`) or plain Adam (as `adamDenseOp`). Record each
 * chunk's copy and dispatches in order; chunks share the scratch.
 */
export function adamTexturedChunks(
  gpu: Gpu,
  t: AdamTensor,
  tex: AdamTextures,
  shape: { rows: number; cols: number; decoder: boolean },
  step: AdamStep,
): AdamChunk[] {
  const { rows, cols, decoder } = shape;
  const chunks: AdamChunk[] = [];
  for (let row0 = 0; row0 < rows; row0 += tex.scratch.rows) {
    const h = Math.min(tex.scratch.rows, rows - row0);
    const copy = (encoder: GPUCommandEncoder) => {
      [t.grad, t.m, t.v].forEach((src, i) =>
        encodeMatrixTextureCopy(encoder, src, { ...tex.scratch.textures[i], rows: h }, row0)
      );
    };
    const chunk = { rows: h, cols: cols / 4, row0, tex };
    const dispatch = decoder
      ? rowsDispatch(gpu, t, 4, chunk, step)
      : denseDispatch(gpu, t, 4, chunk, step);
    chunks.push({ copy, dispatches: [dispatch] });
  }
  return chunks;
}

/** Rows [row0, row0 + rows) of a tensor of `cols` units per row, and the textures they are read from. */
interface Span {
  rows: number;
  cols: number;
  row0: number;
  tex?: AdamTextures;
}

/** The plain Adam dispatch over a span (one invocation per unit of `vec` floats). */
function denseDispatch(gpu: Gpu, t: AdamTensor, vec: 1 | 4, s: Span, step: AdamStep): Dispatch {
  const units = s.rows * s.cols;
  const WG = workgroupSizes(gpu).dense;
  const grid = wrapGrid(gpu, Math.ceil(units / WG));
  const fields = { len: units, rows: s.rows, cols: s.cols, row_stride: grid.stride * WG };
  return {
    kernel: kernel(vec === 4 ? "adam_dense4" : "adam_dense", WG, !!s.tex),
    buffers: bindings(gpu, t, params(gpu, fields, step, s.row0), vec, s.tex),
    workgroups: grid.workgroups,
  };
}

/** The decoder-row dispatch over a span (one workgroup per row). */
function rowsDispatch(gpu: Gpu, t: AdamTensor, vec: 1 | 4, s: Span, step: AdamStep): Dispatch {
  const grid = wrapGrid(gpu, s.rows);
  const fields = { len: s.rows * s.cols, rows: s.rows, cols: s.cols, row_stride: grid.stride };
  return {
    kernel: kernel(vec === 4 ? "adam_rows4" : "adam_rows", workgroupSizes(gpu).rows, !!s.tex),
    buffers: bindings(gpu, t, params(gpu, fields, step, s.row0), vec, s.tex),
    workgroups: grid.workgroups,
  };
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
  row0 = 0,
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
      row0,
      _p1: 0,
    },
    ["lr", "beta1", "beta2", "eps", "bc1", "bc2"],
  );
}

/** Dispatches of dense Adam on a flat tensor of `len` floats (grad zeroed afterwards). */
export function adamDenseOp(gpu: Gpu, t: AdamTensor, len: number, step: AdamStep): Dispatch[] {
  const vec = len % 4 === 0 ? 4 : 1; // vec4 loads when the length allows
  return [denseDispatch(gpu, t, vec, { rows: 1, cols: len / vec, row0: 0 }, step)];
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
  return [rowsDispatch(gpu, t, vec, { rows, cols: cols / vec, row0: 0 }, step)];
}
