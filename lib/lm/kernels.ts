/**
 * Host side of the GPT-2 forward kernels (kernels/lm_*.wgsl): each function returns the
 * `Dispatch` records of one kernel launch, so a whole forward pass can be encoded into one
 * submit. Uniform buffers made here are pushed onto `scratch` for the caller to destroy once
 * the work has completed.
 *
 * Shape legend: rows = tokens in the batch (sequences laid end to end), d = model width,
 * hd = head width, V = vocabulary (or a chunk of it).
 */
import type { Gpu } from "../gpu/device.ts";
import { uniforms } from "../gpu/buffer.ts";
import type { Dispatch, Kernel } from "../gpu/kernel.ts";

/** Workgroup size of the elementwise kernels (embedding, GELU, residual add). */
const WG_ELEMENTWISE = 256;
/** Workgroup size of the row reductions (layer norm, cross-entropy); a power of two. */
const WG_ROW = 64;
/** Workgroup size of attention (one invocation per row and head). */
const WG_ATTENTION = 64;
/** Matmul workgroup is WG_MM×WG_MM invocations, each owning a 4×4 output block. */
const WG_MM = 8;
/** Output block of one matmul invocation (TM = TN in kernels/lm_matmul.wgsl). */
const MM_BLOCK = 4;
/** Largest head width the attention kernel holds in registers (MAX_HD in the WGSL). */
export const MAX_HEAD_DIM = 128;
/** Workgroups per dimension we use before wrapping a 1-D grid into y. */
const MAX_X = 65535;

/** Uniform buffers created for pending dispatches; destroy after the submit completes. */
export type Scratch = GPUBuffer[];

function grid1d(total: number, wg: number): { workgroups: [number, number]; rowStride: number } {
  const groups = Math.max(1, Math.ceil(total / wg));
  const x = Math.min(groups, MAX_X);
  return { workgroups: [x, Math.ceil(groups / x)], rowStride: x * wg };
}

function rowGrid(rows: number): [number, number] {
  const x = Math.min(Math.max(rows, 1), MAX_X);
  return [x, Math.ceil(rows / x)];
}

function param(gpu: Gpu, scratch: Scratch, fields: Record<string, number>, floats: string[] = []) {
  const buffer = uniforms(gpu, fields, floats);
  scratch.push(buffer);
  return buffer;
}

/** x[n, :] = wte_chunk[tok[n] - start, :] + wpe[pos[n], :] for tokens in this vocabulary chunk. */
export function embeddingDispatch(
  gpu: Gpu,
  scratch: Scratch,
  b: { tok: GPUBuffer; pos: GPUBuffer; wte: GPUBuffer; wpe: GPUBuffer; x: GPUBuffer },
  s: { rows: number; d: number; vocabStart: number; vocabCount: number },
): Dispatch {
  const { workgroups, rowStride } = grid1d(s.rows * s.d, WG_ELEMENTWISE);
  const u = param(gpu, scratch, {
    rows: s.rows,
    d: s.d,
    vocab_start: s.vocabStart,
    vocab_count: s.vocabCount,
    row_stride: rowStride,
  });
  return {
    kernel: { file: "lm_embedding.wgsl", entry: "main", constants: { WG: WG_ELEMENTWISE } },
    buffers: [b.tok, b.pos, b.wte, b.wpe, b.x, u],
    workgroups,
  };
}

/** y = layer_norm(x) · gamma + beta over the last dimension, rows × d. */
export function layerNormDispatch(
  gpu: Gpu,
  scratch: Scratch,
  b: { x: GPUBuffer; gamma: GPUBuffer; beta: GPUBuffer; y: GPUBuffer },
  s: { rows: number; d: number; eps: number },
): Dispatch {
  const u = param(gpu, scratch, { rows: s.rows, d: s.d, eps: s.eps }, ["eps"]);
  return {
    kernel: { file: "lm_layernorm.wgsl", entry: "main", constants: { WG: WG_ROW } },
    buffers: [b.x, b.gamma, b.beta, b.y, u],
    workgroups: rowGrid(s.rows),
  };
}

/**
 * out[M, N] = a[M, K] @ W (+ bias). W is [K, N] (HF Conv1D) or, with `transB`, [N, K],
 * starting `bOffset` elements into `w`. Pass `bias: undefined` for no bias.
 */
export function matmulDispatch(
  gpu: Gpu,
  scratch: Scratch,
  b: { a: GPUBuffer; w: GPUBuffer; bias?: GPUBuffer; out: GPUBuffer },
  s: { M: number; N: number; K: number; transB?: boolean; bOffset?: number },
): Dispatch {
  const u = param(gpu, scratch, { M: s.M, N: s.N, K: s.K, b_off: s.bOffset ?? 0 });
  const kernel: Kernel = {
    file: "lm_matmul.wgsl",
    entry: "main",
    constants: {
      WG_X: WG_MM,
      WG_Y: WG_MM,
      TRANS_B: s.transB ? 1 : 0,
      HAS_BIAS: b.bias ? 1 : 0,
    },
  };
  const tile = WG_MM * MM_BLOCK;
  return {
    kernel,
    buffers: [b.a, b.w, b.bias ?? b.w, b.out, u],
    workgroups: [Math.ceil(s.N / tile), Math.ceil(s.M / tile)],
  };
}

/** Causal multi-head attention from fused qkv [rows, 3d] into out [rows, d]. */
export function attentionDispatch(
  gpu: Gpu,
  scratch: Scratch,
  b: { qkv: GPUBuffer; out: GPUBuffer },
  s: { rows: number; seq: number; nHead: number; headDim: number },
): Dispatch {
  const { workgroups, rowStride } = grid1d(s.rows * s.nHead, WG_ATTENTION);
  const u = param(gpu, scratch, {
    rows: s.rows,
    seq: s.seq,
    n_head: s.nHead,
    hd: s.headDim,
    scale: 1 / Math.sqrt(s.headDim),
    row_stride: rowStride,
  }, ["scale"]);
  return {
    kernel: { file: "lm_attention.wgsl", entry: "main", constants: { WG: WG_ATTENTION } },
    buffers: [b.qkv, b.out, u],
    workgroups,
  };
}

/** In-place tanh-GELU over the first n elements of x. */
export function geluDispatch(gpu: Gpu, scratch: Scratch, x: GPUBuffer, n: number): Dispatch {
  const { workgroups, rowStride } = grid1d(n, WG_ELEMENTWISE);
  const u = param(gpu, scratch, { n, row_stride: rowStride });
  return {
    kernel: { file: "lm_gelu.wgsl", entry: "main", constants: { WG: WG_ELEMENTWISE } },
    buffers: [x, u],
    workgroups,
  };
}

/** In-place bias add x[r, c] += bias[c] over rows × cols. */
export function biasDispatch(
  gpu: Gpu,
  scratch: Scratch,
  b: { x: GPUBuffer; bias: GPUBuffer },
  s: { rows: number; cols: number },
): Dispatch {
  const n = s.rows * s.cols;
  const { workgroups, rowStride } = grid1d(n, WG_ELEMENTWISE);
  const u = param(gpu, scratch, { n, cols: s.cols, row_stride: rowStride });
  return {
    kernel: { file: "lm_bias.wgsl", entry: "main", constants: { WG: WG_ELEMENTWISE } },
    buffers: [b.x, b.bias, u],
    workgroups,
  };
}

/** In-place residual add x[i] += y[i] over the first n elements. */
export function residualDispatch(
  gpu: Gpu,
  scratch: Scratch,
  b: { x: GPUBuffer; y: GPUBuffer },
  n: number,
): Dispatch {
  const { workgroups, rowStride } = grid1d(n, WG_ELEMENTWISE);
  const u = param(gpu, scratch, { n, row_stride: rowStride });
  return {
    kernel: { file: "lm_residual.wgsl", entry: "main", constants: { WG: WG_ELEMENTWISE } },
    buffers: [b.x, b.y, u],
    workgroups,
  };
}

/**
 * Fold logits of vocabulary ids [start, start+count) into the running per-row
 * (max, exp-sum, target logit) state [rows, 3]; `init` for the first chunk.
 */
export function crossEntropyUpdateDispatch(
  gpu: Gpu,
  scratch: Scratch,
  b: { logits: GPUBuffer; target: GPUBuffer; state: GPUBuffer },
  s: { rows: number; count: number; start: number; init: boolean },
): Dispatch {
  const u = param(gpu, scratch, {
    rows: s.rows,
    count: s.count,
    start: s.start,
    init: s.init ? 1 : 0,
  });
  return {
    kernel: { file: "lm_cross_entropy.wgsl", entry: "update", constants: { WG: WG_ROW } },
    buffers: [b.logits, b.target, b.state, u],
    workgroups: rowGrid(s.rows),
  };
}

/** nll[r] = (logsumexp_r, logsumexp_r - target_logit_r) from the final state. */
export function crossEntropyFinishDispatch(
  gpu: Gpu,
  scratch: Scratch,
  b: { state: GPUBuffer; nll: GPUBuffer },
  rows: number,
): Dispatch {
  const u = param(gpu, scratch, { rows, count: 0, start: 0, init: 0 });
  return {
    kernel: { file: "lm_cross_entropy.wgsl", entry: "finish", constants: { WG: WG_ROW } },
    buffers: [b.state, b.nll, u],
    workgroups: [Math.max(1, Math.ceil(rows / WG_ROW))],
  };
}
