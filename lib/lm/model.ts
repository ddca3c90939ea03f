/**
 * The GPT-2 forward pass on WebGPU: weights uploaded once, then `forward` runs a batch of
 * equal-length token windows through embedding → blocks → final layer norm → tied unembedding →
 * cross-entropy, all as kernels/lm_*.wgsl dispatches in one submit.
 *
 * Hooks (lib/lm/hooks.ts) can be captured (copied out) or spliced (overwritten with given values,
 * after which the pass goes on with them). Without a loss, the pass stops right after the last
 * hook it needs. The token table lives in vocabulary chunks of at most one storage binding each,
 * and logits are produced and folded into the cross-entropy one chunk at a time, so full logits
 * never need to fit in one buffer.
 *
 * Linear layers run on the shared register-blocked GEMM of lib/sae/ops/encoder_gemm.ts
 * (out = a·Wᵀ, per-adapter variant: ~10× faster than kernels/lm_matmul.wgsl on llvmpipe), so the
 * HF Conv1D weights ([in, out]) are transposed to [out, in] once at upload and the bias is added by
 * kernels/lm_bias.wgsl. kernels/lm_matmul.wgsl remains for unembedding chunks whose logits would
 * not fit one binding (very large batches).
 *
 * Shape legend: rows = batch·seq tokens (sequences end to end), d = n_embd, V = vocab.
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, readF32, uploadStorage, writeBuffer } from "../gpu/buffer.ts";
import { type Dispatch, encodeDispatches, getPipeline, withErrorScope } from "../gpu/kernel.ts";
import { ArborError, DataError } from "../errors.ts";
import type { Gpt2Config } from "./config.ts";
import type { Gpt2Weights } from "./weights.ts";
import { checkHook, hookName, type HookPoint, hookRank } from "./hooks.ts";
import { encoderGemmOp } from "../sae/ops/encoder_gemm.ts";
import {
  attentionDispatch,
  biasDispatch,
  crossEntropyFinishDispatch,
  crossEntropyUpdateDispatch,
  embeddingDispatch,
  geluDispatch,
  layerNormDispatch,
  matmulDispatch,
  residualDispatch,
  type Scratch,
} from "./kernels.ts";

/** Target id meaning "no next token" (last position of a window): matches no vocabulary chunk. */
const NO_TARGET = 0xffffffff;

/** Default token-table rows per GPU buffer: logits [rows, 8192] f32 fit 128 MiB up to 4096 rows. */
const UNEMBED_CHUNK_ROWS = 8192;

/** [rows, cols] row-major → [cols, rows] (HF Conv1D [in, out] → GEMM [out, in]). */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** Options for uploading a model. */
export interface Gpt2ModelOptions {
  /** Most token-table rows per GPU buffer (default 8192, fewer if one binding holds less). */
  vocabChunkRows?: number;
  /** Most logits columns computed at once (default: what one binding holds for the batch). */
  logitsChunkCols?: number;
}

/** What one forward pass should do. */
export interface ForwardOptions {
  /** Token ids [batch·seq]: `batch` windows of `seq` tokens laid end to end. */
  tokens: ArrayLike<number>;
  /** Window length; tokens.length must be a multiple of it. Default: tokens.length. */
  seq?: number;
  /** Hooks whose activations [rows, d] to return. */
  capture?: HookPoint[];
  /** Replace the activation at `hook` with `values` ([rows, d] f32) and go on from there. */
  splice?: { hook: HookPoint; values: Float32Array | GPUBuffer };
  /** Compute the next-token cross-entropy (runs the whole model). */
  loss?: boolean;
  /** Also return full logits [rows, V] (small batches only: tests and inspection). */
  logits?: boolean;
}

/** Results of a forward pass. */
export interface ForwardResult {
  /** Captured activations by hook name ("resid_pre.1"), each [rows, d] f32. */
  activations: Map<string, Float32Array>;
  /** Per-position next-token loss [rows]; NaN at the last position of each window. */
  nll?: Float32Array;
  /** Per-position log-sum-exp of the logits [rows] (log-softmax = logits - logsumexp). */
  logsumexp?: Float32Array;
  /** Mean next-token cross-entropy over every position that has a next token. */
  loss?: number;
  /** Full logits [rows, V] when asked for. */
  logits?: Float32Array;
}

/** One block on the GPU; linear weights transposed to [out, in]. */
interface GpuBlock {
  ln1Gamma: GPUBuffer;
  ln1Beta: GPUBuffer;
  attnWt: GPUBuffer; // [3d, d]
  attnB: GPUBuffer;
  attnProjWt: GPUBuffer; // [d, d]
  attnProjB: GPUBuffer;
  ln2Gamma: GPUBuffer;
  ln2Beta: GPUBuffer;
  fcWt: GPUBuffer; // [inner, d]
  fcB: GPUBuffer;
  projWt: GPUBuffer; // [d, inner]
  projB: GPUBuffer;
}

interface VocabChunk {
  start: number;
  count: number;
  buffer: GPUBuffer;
}

/** Activation buffers of one forward pass, sized for `rows` tokens. */
interface Workspace {
  rows: number;
  x: GPUBuffer; // [rows, d] residual stream
  h: GPUBuffer; // [rows, d] layer-norm output
  qkv: GPUBuffer; // [rows, 3d]
  att: GPUBuffer; // [rows, d] heads before c_proj
  attnOut: GPUBuffer; // [rows, d]
  hidden: GPUBuffer; // [rows, inner]
  mlpOut: GPUBuffer; // [rows, d]
}

type Step = Dispatch | { copy: { src: GPUBuffer; dst: GPUBuffer; bytes: number } };

/** A GPT-2 model resident on the GPU. */
export class Gpt2Model {
  readonly gpu: Gpu;
  readonly config: Gpt2Config;
  #wte: VocabChunk[];
  #wpe: GPUBuffer;
  #blocks: GpuBlock[];
  #lnfGamma: GPUBuffer;
  #lnfBeta: GPUBuffer;
  /** Zeros [max(d, inner)]: the GEMM's subtracted bias (bDec), unused here. */
  #zeros: GPUBuffer;
  #logitsChunkCols: number;
  #ws: Workspace | undefined;

  private constructor(
    gpu: Gpu,
    config: Gpt2Config,
    weights: Gpt2Weights,
    options: Gpt2ModelOptions,
  ) {
    this.gpu = gpu;
    this.config = config;
    const d = config.nEmbd;
    const maxRows = Math.floor(gpu.device.limits.maxStorageBufferBindingSize / (d * 4));
    const chunkRows = Math.max(1, Math.min(options.vocabChunkRows ?? UNEMBED_CHUNK_ROWS, maxRows));
    this.#wte = [];
    for (let start = 0; start < config.vocabSize; start += chunkRows) {
      const count = Math.min(chunkRows, config.vocabSize - start);
      const data = weights.wte.subarray(start * d, (start + count) * d);
      this.#wte.push({ start, count, buffer: uploadStorage(gpu, data, `wte[${start}..]`) });
    }
    const up = (a: Float32Array, label: string) => uploadStorage(gpu, a, label);
    this.#wpe = up(weights.wpe, "wpe");
    const inner = config.nInner;
    this.#blocks = weights.blocks.map((b, l) => ({
      ln1Gamma: up(b.ln1Gamma, `h.${l}.ln_1.weight`),
      ln1Beta: up(b.ln1Beta, `h.${l}.ln_1.bias`),
      attnWt: up(transpose(b.attnW, d, 3 * d), `h.${l}.attn.c_attn.weight`),
      attnB: up(b.attnB, `h.${l}.attn.c_attn.bias`),
      attnProjWt: up(transpose(b.attnProjW, d, d), `h.${l}.attn.c_proj.weight`),
      attnProjB: up(b.attnProjB, `h.${l}.attn.c_proj.bias`),
      ln2Gamma: up(b.ln2Gamma, `h.${l}.ln_2.weight`),
      ln2Beta: up(b.ln2Beta, `h.${l}.ln_2.bias`),
      fcWt: up(transpose(b.fcW, d, inner), `h.${l}.mlp.c_fc.weight`),
      fcB: up(b.fcB, `h.${l}.mlp.c_fc.bias`),
      projWt: up(transpose(b.projW, inner, d), `h.${l}.mlp.c_proj.weight`),
      projB: up(b.projB, `h.${l}.mlp.c_proj.bias`),
    }));
    this.#zeros = createStorage(gpu, Math.max(d, inner) * 4, "zeros");
    this.#logitsChunkCols = options.logitsChunkCols ?? Infinity;
    this.#lnfGamma = up(weights.lnfGamma, "ln_f.weight");
    this.#lnfBeta = up(weights.lnfBeta, "ln_f.bias");
  }

  /** Upload host weights to the GPU. */
  static create(
    gpu: Gpu,
    config: Gpt2Config,
    weights: Gpt2Weights,
    options: Gpt2ModelOptions = {},
  ): Gpt2Model {
    return new Gpt2Model(gpu, config, weights, options);
  }

  /** Free every GPU buffer of the model. */
  destroy() {
    this.#wte.forEach((c) => c.buffer.destroy());
    this.#wpe.destroy();
    this.#blocks.forEach((b) => Object.values(b).forEach((buf) => buf.destroy()));
    this.#lnfGamma.destroy();
    this.#lnfBeta.destroy();
    this.#zeros.destroy();
    this.#freeWorkspace();
  }

  #freeWorkspace() {
    if (!this.#ws) return;
    const { rows: _, ...buffers } = this.#ws;
    Object.values(buffers).forEach((b) => b.destroy());
    this.#ws = undefined;
  }

  #workspace(rows: number): Workspace {
    if (this.#ws && this.#ws.rows >= rows) return this.#ws;
    this.#freeWorkspace();
    const { nEmbd: d, nInner } = this.config;
    const mk = (cols: number, label: string) => createStorage(this.gpu, rows * cols * 4, label);
    this.#ws = {
      rows,
      x: mk(d, "resid"),
      h: mk(d, "ln out"),
      qkv: mk(3 * d, "qkv"),
      att: mk(d, "attn heads"),
      attnOut: mk(d, "attn_out"),
      hidden: mk(nInner, "mlp hidden"),
      mlpOut: mk(d, "mlp_out"),
    };
    return this.#ws;
  }

  /**
   * Dispatches of out[M, N] = a[M, K]·wtᵀ (+ bias); the bias uniforms go to `scratch` (the GEMM
   * op's are shared by content and never destroyed).
   */
  #linear(
    scratch: Scratch,
    b: { a: GPUBuffer; wt: GPUBuffer; bias?: GPUBuffer; out: GPUBuffer },
    s: { M: number; N: number; K: number },
  ): Dispatch[] {
    const gemm = encoderGemmOp(this.gpu, { xs: b.a, encW: b.wt, bDec: this.#zeros, pre: b.out }, {
      d: s.K,
      n: s.N,
      rows: s.M,
      rowOffset: 0,
    });
    if (!b.bias) return gemm;
    return [
      ...gemm,
      biasDispatch(this.gpu, scratch, { x: b.out, bias: b.bias }, { rows: s.M, cols: s.N }),
    ];
  }

  /** Run one forward pass; see ForwardOptions. */
  async forward(options: ForwardOptions): Promise<ForwardResult> {
    const { gpu, config } = this;
    const { nEmbd: d, nInner, nHead, nLayer } = config;
    const rows = options.tokens.length;
    const seq = options.seq ?? rows;
    if (rows === 0) throw new ArborError("forward: no tokens given");
    if (seq <= 0 || rows % seq !== 0) {
      throw new ArborError(`forward: ${rows} tokens are not a whole number of windows of ${seq}`);
    }
    if (seq > config.nPositions) {
      throw new ArborError(
        `forward: window of ${seq} tokens exceeds the model's ${config.nPositions} positions; ` +
          `use --context ${config.nPositions} or less`,
      );
    }
    const tok = new Uint32Array(rows);
    const pos = new Uint32Array(rows);
    const target = new Uint32Array(rows);
    for (let n = 0; n < rows; n++) {
      const t = options.tokens[n];
      if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) {
        throw new DataError(
          `forward: token id ${t} at index ${n} is outside the vocabulary 0..${
            config.vocabSize - 1
          }`,
        );
      }
      tok[n] = t;
      pos[n] = n % seq;
    }
    for (let n = 0; n < rows; n++) target[n] = n % seq === seq - 1 ? NO_TARGET : tok[n + 1];
    const capture = options.capture ?? [];
    for (const h of capture) checkHook(h, nLayer);
    const splice = options.splice;
    if (splice) {
      checkHook(splice.hook, nLayer);
      const have = splice.values instanceof Float32Array
        ? splice.values.length * 4
        : splice.values.size;
      if (have < rows * d * 4) {
        throw new ArborError(
          `forward: splice values for ${
            hookName(splice.hook)
          } hold ${have} bytes, need [${rows}, ${d}] f32`,
        );
      }
    }
    const wantLogits = Boolean(options.logits);
    const wantLoss = Boolean(options.loss) || wantLogits;
    const needed = [...capture, ...(splice ? [splice.hook] : [])];
    const lastRank = wantLoss ? Infinity : Math.max(-1, ...needed.map(hookRank));

    const ws = this.#workspace(rows);
    const scratch: Scratch = [];
    const temps: GPUBuffer[] = [];
    const temp = (b: GPUBuffer) => (temps.push(b), b);
    const tokBuf = temp(uploadStorage(gpu, tok, "tokens"));
    const posBuf = temp(uploadStorage(gpu, pos, "positions"));
    const bytes = rows * d * 4;
    let spliceBuf: GPUBuffer | undefined;
    if (splice) {
      if (splice.values instanceof Float32Array) {
        spliceBuf = temp(createStorage(gpu, bytes, "splice values"));
        writeBuffer(gpu, spliceBuf, splice.values.subarray(0, rows * d));
      } else spliceBuf = splice.values;
    }
    const captured = new Map<string, GPUBuffer>();
    const steps: Step[] = [];
    let done = false;
    // At a hook: splice first (so later work sees the new values), then capture.
    const point = (hook: HookPoint, buf: GPUBuffer) => {
      const name = hookName(hook);
      if (splice && hookName(splice.hook) === name) {
        steps.push({ copy: { src: spliceBuf!, dst: buf, bytes } });
      }
      if (capture.some((h) => hookName(h) === name) && !captured.has(name)) {
        const dst = temp(createStorage(gpu, bytes, `capture ${name}`));
        captured.set(name, dst);
        steps.push({ copy: { src: buf, dst, bytes } });
      }
      if (hookRank(hook) >= lastRank) done = true;
    };

    for (const chunk of this.#wte) {
      steps.push(
        embeddingDispatch(gpu, scratch, {
          tok: tokBuf,
          pos: posBuf,
          wte: chunk.buffer,
          wpe: this.#wpe,
          x: ws.x,
        }, {
          rows,
          d,
          vocabStart: chunk.start,
          vocabCount: chunk.count,
        }),
      );
    }
    const eps = config.layerNormEpsilon;
    for (let l = 0; l < nLayer && !done; l++) {
      const w = this.#blocks[l];
      point({ site: "resid_pre", layer: l }, ws.x);
      if (done) break;
      steps.push(
        layerNormDispatch(gpu, scratch, { x: ws.x, gamma: w.ln1Gamma, beta: w.ln1Beta, y: ws.h }, {
          rows,
          d,
          eps,
        }),
        ...this.#linear(scratch, { a: ws.h, wt: w.attnWt, bias: w.attnB, out: ws.qkv }, {
          M: rows,
          N: 3 * d,
          K: d,
        }),
        attentionDispatch(gpu, scratch, { qkv: ws.qkv, out: ws.att }, {
          rows,
          seq,
          nHead,
          headDim: d / nHead,
        }),
        ...this.#linear(scratch, {
          a: ws.att,
          wt: w.attnProjWt,
          bias: w.attnProjB,
          out: ws.attnOut,
        }, {
          M: rows,
          N: d,
          K: d,
        }),
      );
      point({ site: "attn_out", layer: l }, ws.attnOut);
      if (done) break;
      steps.push(
        residualDispatch(gpu, scratch, { x: ws.x, y: ws.attnOut }, rows * d),
        layerNormDispatch(gpu, scratch, { x: ws.x, gamma: w.ln2Gamma, beta: w.ln2Beta, y: ws.h }, {
          rows,
          d,
          eps,
        }),
        ...this.#linear(scratch, { a: ws.h, wt: w.fcWt, bias: w.fcB, out: ws.hidden }, {
          M: rows,
          N: nInner,
          K: d,
        }),
        geluDispatch(gpu, scratch, ws.hidden, rows * nInner),
        ...this.#linear(scratch, { a: ws.hidden, wt: w.projWt, bias: w.projB, out: ws.mlpOut }, {
          M: rows,
          N: d,
          K: nInner,
        }),
      );
      point({ site: "mlp_out", layer: l }, ws.mlpOut);
      if (done) break;
      steps.push(residualDispatch(gpu, scratch, { x: ws.x, y: ws.mlpOut }, rows * d));
      point({ site: "resid_post", layer: l }, ws.x);
    }

    let nllBuf: GPUBuffer | undefined;
    const logitParts: { start: number; count: number; buffer: GPUBuffer }[] = [];
    if (wantLoss) {
      steps.push(
        layerNormDispatch(gpu, scratch, {
          x: ws.x,
          gamma: this.#lnfGamma,
          beta: this.#lnfBeta,
          y: ws.h,
        }, {
          rows,
          d,
          eps,
        }),
      );
      const targetBuf = temp(uploadStorage(gpu, target, "targets"));
      const state = temp(createStorage(gpu, rows * 3 * 4, "ce state"));
      nllBuf = temp(createStorage(gpu, rows * 2 * 4, "nll"));
      const maxCols = Math.floor(gpu.device.limits.maxStorageBufferBindingSize / (rows * 4));
      if (maxCols < 1) {
        throw new ArborError(`forward: batch of ${rows} tokens is too large for the logits buffer`);
      }
      const cols = Math.min(
        maxCols,
        this.#logitsChunkCols,
        Math.max(...this.#wte.map((c) => c.count)),
      );
      const logitsBuf = temp(createStorage(gpu, rows * cols * 4, "logits chunk"));
      let first = true;
      for (const chunk of this.#wte) {
        for (let off = 0; off < chunk.count; off += cols) {
          const count = Math.min(cols, chunk.count - off);
          const start = chunk.start + off;
          // A whole chunk goes through the fast GEMM; sub-ranges (huge batches) need lm_matmul's offset.
          const logitsOp = count === chunk.count
            ? this.#linear(scratch, { a: ws.h, wt: chunk.buffer, out: logitsBuf }, {
              M: rows,
              N: count,
              K: d,
            })
            : [matmulDispatch(gpu, scratch, { a: ws.h, w: chunk.buffer, out: logitsBuf }, {
              M: rows,
              N: count,
              K: d,
              transB: true,
              bOffset: off * d,
            })];
          steps.push(
            ...logitsOp,
            crossEntropyUpdateDispatch(gpu, scratch, {
              logits: logitsBuf,
              target: targetBuf,
              state,
            }, {
              rows,
              count,
              start,
              init: first,
            }),
          );
          first = false;
          if (wantLogits) {
            const part = temp(createStorage(gpu, rows * count * 4, `logits ${start}`));
            logitParts.push({ start, count, buffer: part });
            steps.push({ copy: { src: logitsBuf, dst: part, bytes: rows * count * 4 } });
          }
        }
      }
      steps.push(crossEntropyFinishDispatch(gpu, scratch, { state, nll: nllBuf }, rows));
    }

    try {
      await this.#submit(steps);
      const result: ForwardResult = { activations: new Map() };
      for (const [name, buf] of captured) {
        result.activations.set(name, await readF32(gpu, buf, rows * d));
      }
      if (nllBuf) {
        const raw = await readF32(gpu, nllBuf, rows * 2);
        const nll = new Float32Array(rows);
        const lse = new Float32Array(rows);
        let sum = 0;
        let count = 0;
        for (let n = 0; n < rows; n++) {
          lse[n] = raw[2 * n];
          if (n % seq === seq - 1) nll[n] = NaN;
          else {
            nll[n] = raw[2 * n + 1];
            sum += nll[n];
            count++;
          }
        }
        result.nll = nll;
        result.logsumexp = lse;
        result.loss = count ? sum / count : NaN;
      }
      if (wantLogits) {
        const V = config.vocabSize;
        const logits = new Float32Array(rows * V);
        for (const part of logitParts) {
          const data = await readF32(gpu, part.buffer, rows * part.count);
          for (let n = 0; n < rows; n++) {
            logits.set(data.subarray(n * part.count, (n + 1) * part.count), n * V + part.start);
          }
        }
        result.logits = logits;
      }
      return result;
    } finally {
      await gpu.device.queue.onSubmittedWorkDone();
      scratch.forEach((b) => b.destroy());
      temps.forEach((b) => b.destroy());
    }
  }

  async #submit(steps: Step[]) {
    const { gpu } = this;
    const dispatches = steps.filter((s): s is Dispatch => "kernel" in s);
    const pipelines = new Map<Dispatch, GPUComputePipeline>();
    await Promise.all(
      dispatches.map(async (d) => pipelines.set(d, await getPipeline(gpu, d.kernel))),
    );
    await withErrorScope(gpu, "gpt2 forward", () => {
      const encoder = gpu.device.createCommandEncoder({ label: "gpt2 forward" });
      for (const s of steps) {
        if ("kernel" in s) encodeDispatches(gpu, encoder, [s], [pipelines.get(s)!]);
        else encoder.copyBufferToBuffer(s.copy.src, 0, s.copy.dst, 0, s.copy.bytes);
      }
      gpu.device.queue.submit([encoder.finish()]);
    });
  }
}
