/**
 * GpuEngine: the whole SAE training step on WebGPU — upload, standardise, encoder GEMM +
 * selection (in row chunks when pre [B, n] would exceed a storage binding), level
 * reconstructions, losses, AuxK, sparse backward, Adam, dead tracking — recorded into one
 * command encoder per step, with one small readback (loss scalars, fire/active counts and the
 * dead counters) for the step's statistics.
 *
 * Legend: B tokens, d = d_in, n features, K slots per row, L levels, A aux groups.
 * Parameters live on the GPU; `readState` copies them back. Behaviour equals ReferenceEngine
 * (lib/sae/reference_engine.ts) up to float rounding; tests/sae/gpu_engine_test.ts checks it.
 */
import type { SaeConfig } from "./config.ts";
import { layerOffsets, numFeatures, numLevels, slotsPerRow } from "./config.ts";
import {
  type BatchValues,
  batchValuesF32,
  checkStateShapes,
  cloneState,
  type EncodeResult,
  initState,
  type SaeEngine,
  type SaeState,
  type StepStats,
  type StepTicket,
} from "./engine.ts";
import { checkBatch } from "./reference_engine.ts";
import {
  type AuxGroup,
  auxGroups,
  geometricMedian,
  standardize,
  THRESHOLD_DECAY,
} from "./reference/ops.ts";
import type { Gpu } from "../gpu/device.ts";
import { getGpu } from "../gpu/device.ts";
import { createStorage, readF32, readU32, writeBuffer } from "../gpu/buffer.ts";
import { unpackF16Op } from "../gpu/unpack_f16.ts";
import { type Dispatch, encodeDispatches, getPipeline, withErrorScope } from "../gpu/kernel.ts";
import { releaseUniforms } from "./ops/grid.ts";
import { SparseBackward } from "./ops/backward.ts";
import {
  ADAM_CHUNK_ROWS,
  adamDecoderRowsOp,
  adamDenseOp,
  type AdamScratch,
  type AdamTensor,
  adamTexturedChunks,
  createAdamScratch,
  destroyAdamScratch,
} from "./ops/adam.ts";
import { deadMaskOp, deadUpdateOp, fireCountOp } from "./ops/dead.ts";
import { standardizeOp, unstandardizeOp } from "./ops/standardize.ts";
import {
  chunkMaxLength,
  createGemmTextures,
  encodeGemmTextureCopies,
  encoderGemmOp,
  type GemmTextures,
  type GemmVariant,
  gemmWritesChunkMax,
  maxGemmChunkRows,
  preferTextureGemm,
  textureGemmBlock,
  textureGemmOp,
} from "./ops/encoder_gemm.ts";
import {
  createMatrixTexture,
  encodeMatrixTextureCopy,
  type MatrixTexture,
  matrixTextureView,
} from "./ops/matrix_texture.ts";
import {
  childLists,
  chunkMaximaServe,
  createLayerTable,
  createParentsTexture,
  createPreTexture,
  deadListBuffer,
  encodePreTextureCopy,
  type ParentsTexture,
  preChunkBytes,
  type PreTexture,
  preTextureSupported,
  selectAuxOp,
  type SelectionLayout,
  selectTopKOp,
  writeParentsTexture,
} from "./ops/topk.ts";
import { groupSlotsOp, type SlotBlocks, slotBlocks } from "./ops/slot_blocks.ts";
import {
  decodeProductOp,
  denseAuxGemm,
  encodeDecodeCopies,
  gatherColsOp,
  MAX_GATED,
  planOp,
  scatterCodesOp,
} from "./ops/aux_dense.ts";
import {
  blockedTextureDecodeOp,
  createLevelBounds,
  type LevelPlan,
  matryoshkaLevels,
  singleLevel,
  sparseDecodeOp,
  textureDecodeOp,
  treeLevels,
} from "./ops/sparse_decode.ts";
import { lossBlocksLength, lossTermCount, lossTermsOp, type LossTextures } from "./ops/loss.ts";
import { thresholdFilterOp } from "./ops/threshold.ts";
import {
  batchTopKOp,
  type BatchTopKScratch,
  createBatchTopKScratch,
  type PreChunk,
} from "./ops/batch_topk.ts";
import { ArborError } from "../errors.ts";
import {
  defaultPhaseTiming,
  dispatchMark,
  PhaseTimer,
  type PhaseTiming,
} from "../gpu/phase_timer.ts";

/** Options of `GpuEngine.create`. */
export interface GpuEngineOptions {
  /** Device to use (default: the process-wide `getGpu({quiet: true})`). */
  gpu?: Gpu;
  /** Encoder GEMM variant (default: by adapter). */
  gemmVariant?: GemmVariant;
  /** Upper bound on rows per GEMM + selection chunk (default: as many as one binding holds). */
  maxChunkRows?: number;
  /**
   * Time every training step's phases; see `lastProfile`. `true` takes the adapter's way
   * (`defaultPhaseTiming`: timestamp queries on real GPUs, wall time per submitted phase on
   * software adapters); a `PhaseTiming` forces one.
   */
  profile?: boolean | PhaseTiming;
  /**
   * With `profile`: time each dispatch apart as "<phase>: <kernel entry>" (commands between
   * dispatches, such as copies, stay under the phase's own name). Many more marks: a diagnostic.
   */
  profileDispatches?: boolean;
  /** Bytes of decoder rows per block of the blocked AuxK decode (default SLOT_BLOCK_BYTES; tests). */
  auxBlockBytes?: number;
  /**
   * AuxK's decode and gradient rows by dense products when few features are dead (./ops/aux_dense.ts):
   * default on software adapters only (texture GEMMs); true also on GPUs (storage GEMMs: slower
   * than the sparse path on an H200, bench/README.md); false keeps the sparse path everywhere.
   */
  denseAux?: boolean;
}

/** Parameter, moment and gradient buffers (fixed for the engine's life). */
interface ParamBuffers {
  enc: AdamTensor;
  dec: AdamTensor;
  bias: AdamTensor;
  /** u32 [n] tokens since each feature last fired. */
  since: GPUBuffer;
  /** tree: i32 [n] parent of every feature (global index; root of layer l = o_l); else 1 dummy. */
  parents: GPUBuffer;
  /** tree: u32 [2n + 1] the children by parent (`childLists`), which the selection reads. */
  children?: GPUBuffer;
}

/** Per-batch-size buffers (re-made when B changes). */
interface BatchBuffers {
  B: number;
  chunkRows: number;
  x: GPUBuffer;
  /** [B·d] f16 batch as uploaded, widened into x on the GPU (made by the first f16 batch). */
  xHalf?: GPUBuffer;
  xs: GPUBuffer;
  mean: GPUBuffer;
  std: GPUBuffer;
  /** [chunkRows, n] pre-activations of one row chunk (batchtopk: one buffer per chunk). */
  pre: GPUBuffer[];
  /** [1] f32 BatchTopK's smallest kept positive value. */
  minKept: GPUBuffer;
  /** BatchTopK scratch. */
  batchScratch?: BatchTopKScratch;
  idx: GPUBuffer;
  val: GPUBuffer;
  /** [L, B, d] level reconstructions. */
  recon: GPUBuffer;
  aux: {
    idx: GPUBuffer;
    val: GPUBuffer;
    ehat: GPUBuffer;
    /** Blocked decode only (see `#auxBlocks`): u32 [B, nb + 1] block starts of the regrouped rows. */
    starts?: GPUBuffer;
  }[];
  /** Blocked AuxK decode only: [B, max kAux] scratch the rows are regrouped into, then copied back. */
  auxRegroup?: { idx: GPUBuffer; val: GPUBuffer };
  /** f32 loss sums in lossTermsOp's layout (see the scal* helpers at the end). */
  scal: GPUBuffer;
  /** [T, d] scratch of the loss reductions. */
  partials: GPUBuffer;
  /** Block-sum scratch of the loss reductions (lossBlocksLength floats: a region per term). */
  lossBlocks: GPUBuffer;
  /** u32 [n] 1 = dead (AuxK candidates), computed on the GPU each step (dead_mask). */
  dead: GPUBuffer;
  counts: GPUBuffer;
  active: GPUBuffer;
  backward: SparseBackward;
  /** Whether a step on these buffers already ran inside error scopes. */
  checked: boolean;
  /** xs/encW texture mirrors of the texture GEMM (software adapters). */
  gemmTex?: GemmTextures;
  /** Views of `gemmTex.xs` and `.encW` the backward binds (made once: bind groups are reused). */
  gemmTexViews?: { xs: GPUTextureView; encW: GPUTextureView };
  /** Software adapters: the texture mirror of a pre chunk, which the selections read. */
  preTex?: PreTexture;
  /** Software adapters: mirrors of recon and of each AuxK ê, which the loss sums read (with xs's). */
  lossTex?: { levels: MatrixTexture; aux: MatrixTexture[]; views: LossTextures };
  /**
   * Subgroup texture GEMM and a first selection layer the chunk maxima serve (`chunkMaximaServe`):
   * the chunk maxima of a pre chunk, which the GEMM writes and the top-k reads instead of a first
   * pass over pre.
   */
  cmax?: GPUBuffer;
}

/** The WebGPU SAE engine. Create with `GpuEngine.create`. */
export class GpuEngine implements SaeEngine {
  readonly config: SaeConfig;
  readonly description: string;
  #gpu: Gpu;
  #opts: GpuEngineOptions;
  #n: number;
  #d: number;
  #L: number;
  #K: number;
  #groups: AuxGroup[];
  #p: ParamBuffers;
  #batch?: BatchBuffers;
  #step: number;
  #threshold: number;
  #parentsHost: Int32Array[];
  /** Host copy of tokensSinceFired, refreshed by every step's readback. */
  #since: Uint32Array;
  #layout: SelectionLayout;
  #layerTable: GPUBuffer;
  /** batchtopk: the one-layer table with K = min(n, 4k) slots. */
  #batchLayerTable?: GPUBuffer;
  #levelPlan: LevelPlan;
  #levelBounds: GPUBuffer;
  #auxBoundsCache = new Map<number, GPUBuffer>();
  #phaseTimer?: PhaseTimer;
  /** True while `enqueueStep` records and submits (calls must not interleave). */
  #recording = false;
  /** Rows of the enqueued steps whose statistics are not in yet. */
  #pendingTokens = 0;
  /** Step whose counters `#since` holds (readbacks are applied newest-wins). */
  #sinceStep = 0;
  /** Statistics of the last enqueued step (null once drained). */
  #inflight: Promise<StepStats> | null = null;
  /** Readbacks of submitted steps not started yet, oldest first (see `#startReadbacks`). */
  #unread: { step: number; start: () => void; cancel: () => void }[] = [];
  /** With `profile`: GPU milliseconds per phase of the last training step. */
  lastProfile?: Map<string, number>;
  /** With `profile` timed by wall time: the process's CPU milliseconds per phase of that step. */
  lastProfileCpu?: Map<string, number>;
  /**
   * Host milliseconds spent in `enqueueStep`'s submits since the engine was made: recording the
   * commands, starting earlier steps' readbacks (Deno's mapAsync holds the host until the GPU has
   * done all submitted work) and `queue.submit`.
   */
  readonly hostMs: HostTimes = { record: 0, readbacks: 0, submit: 0 };
  /** Software adapters (d % 64 = 0, no explicit GEMM variant): decW's texture mirror. */
  #decTex?: MatrixTexture;
  /** tree on software adapters: the parents' texture mirror the gated selections read. */
  #parentsTex?: ParentsTexture;
  /** The view of `#decTex` the backward binds (one view, so its bind groups are reused). */
  #decTexView?: GPUTextureView;
  /** With `#decTex`: the textured Adam's scratch, one chunk's grad, m and v (software adapters). */
  #adamScratch?: AdamScratch;
  /** Per AuxK group: the dead-feature blocks of its blocked decode (with `#decTex`), if any. */
  #auxBlocks: (SlotBlocks | undefined)[] = [];

  /**
   * Whether the last batch's selections read pre through its texture mirror (software adapters,
   * n % 64 = 0, row chunks within the texture size limit): AuxK's always, the top-k's when it has
   * no chunk maxima.
   */
  get readsPreTexture(): boolean {
    return this.#batch?.preTex !== undefined;
  }

  /**
   * Whether the last batch's top-k reads the chunk maxima the encoder GEMM writes (subgroup
   * texture GEMM, a first selection layer they serve).
   */
  get readsChunkMaxima(): boolean {
    return this.#batch?.cmax !== undefined;
  }

  /** Per AuxK group: blocks of its blocked decode, 0 where it decodes all rows at once. */
  get auxDecodeBlocks(): number[] {
    return this.#groups.map((_, a) => this.#auxBlocks[a]?.nb ?? 0);
  }

  /**
   * Per AuxK group with a gradient: how the last step summed its AuxK gradient rows — "dense"
   * (GEMMs, few dead), "sparse" (entry by entry) — as the GPU chose; waits for the GPU.
   */
  async auxGradientPaths(): Promise<("dense" | "sparse")[]> {
    return await this.#auxPaths("args");
  }

  /** Per AuxK group with a gradient: how the last step decoded its AuxK codes (as above). */
  async auxDecodePaths(): Promise<("dense" | "sparse")[]> {
    return await this.#auxPaths("argsF");
  }

  async #auxPaths(which: "args" | "argsF"): Promise<("dense" | "sparse")[]> {
    await this.#drain();
    const bb = this.#batch;
    if (!bb) return [];
    return await Promise.all(
      this.#auxInBackward().map(async (_, i) => {
        const x = bb.backward.denseAux(i);
        if (!x) return "sparse" as const;
        const args = await readU32(this.#gpu, x[which]);
        return args[args.length - 1] === 1 ? "dense" as const : "sparse" as const;
      }),
    );
  }

  private constructor(config: SaeConfig, gpu: Gpu, opts: GpuEngineOptions, state: SaeState) {
    this.config = config;
    this.#gpu = gpu;
    this.#opts = opts;
    this.#n = numFeatures(config);
    this.#d = config.dIn;
    this.#L = numLevels(config);
    this.#K = slotsPerRow(config);
    this.#groups = auxGroups(config);
    this.description = `WebGPU engine on ${gpu.description}`;
    const { n, d } = { n: this.#n, d: this.#d };
    const tensor = (len: number, label: string): AdamTensor => ({
      param: createStorage(gpu, len * 4, label),
      grad: createStorage(gpu, len * 4, `${label} grad`),
      m: createStorage(gpu, len * 4, `${label} m`),
      v: createStorage(gpu, len * 4, `${label} v`),
    });
    this.#p = {
      enc: tensor(n * d, "encW"),
      dec: tensor(n * d, "decW"),
      bias: tensor(d, "bDec"),
      since: createStorage(gpu, n * 4, "tokensSinceFired"),
      parents: createStorage(gpu, Math.max(1, n) * 4, "parents"),
      ...(config.arch === "tree"
        ? { children: createStorage(gpu, (2 * n + 1) * 4, "children by parent") }
        : {}),
    };
    const c = config;
    this.#layout = c.arch === "tree"
      ? { sizes: c.layers, kPerLayer: c.kPerLayer, gated: true }
      : { sizes: [this.#n], kPerLayer: [c.k], gated: false };
    this.#layerTable = createLayerTable(gpu, this.#layout);
    if (c.arch === "batchtopk") {
      this.#batchLayerTable = createLayerTable(gpu, {
        sizes: [this.#n],
        kPerLayer: [this.#K],
        gated: false,
      });
    }
    this.#levelPlan = c.arch === "tree"
      ? treeLevels(c.kPerLayer)
      : c.arch === "matryoshka"
      ? matryoshkaLevels(c.layers)
      : singleLevel(this.#K);
    this.#levelBounds = createLevelBounds(gpu, this.#levelPlan);
    if (c.arch === "tree" && gpu.isFallback) {
      // Four parents per texel gather instead of a loop over the lanes per storage load.
      this.#parentsTex = createParentsTexture(gpu, n);
    }
    if (!opts.gemmVariant && preferTextureGemm(gpu, d)) {
      // Texture paths (GEMM ~1.4×, decode ~3× the storage kernels on llvmpipe).
      this.#decTex = createMatrixTexture(gpu, n, d, "decW texture");
      this.#decTexView = matrixTextureView(this.#decTex);
      this.#adamScratch = createAdamScratch(gpu, d, Math.min(n, ADAM_CHUNK_ROWS));
      // AuxK's decode by block of dead features where a group may span more than one block.
      this.#auxBlocks = this.#groups.map((g) => {
        const b = slotBlocks(g.end - g.start, d, g.start, opts.auxBlockBytes);
        return b.nb > 1 ? b : undefined;
      });
    }
    this.#step = 0;
    this.#threshold = -1;
    this.#parentsHost = [];
    this.#since = new Uint32Array(n);
    this.#upload(state);
  }

  /** An engine for `config` on the GPU, starting from `state` (default: seeded init). */
  static async create(
    config: SaeConfig,
    state?: SaeState,
    opts: GpuEngineOptions = {},
  ): Promise<GpuEngine> {
    const gpu = opts.gpu ?? await getGpu({ quiet: true });
    if (state) checkStateShapes(config, state);
    const n = numFeatures(config);
    const paramBytes = n * config.dIn * 4;
    if (paramBytes > gpu.device.limits.maxStorageBufferBindingSize) {
      throw new ArborError(
        `SAE config: encW/decW of ${n} × ${config.dIn} f32 (${paramBytes} bytes) exceed the adapter's ` +
          `storage binding limit (${gpu.device.limits.maxStorageBufferBindingSize}); use fewer features`,
      );
    }
    return new GpuEngine(config, gpu, opts, state ?? initState(config));
  }

  #upload(s: SaeState) {
    const gpu = this.#gpu;
    const p = this.#p;
    writeBuffer(gpu, p.enc.param, s.encW);
    writeBuffer(gpu, p.dec.param, s.decW);
    writeBuffer(gpu, p.bias.param, s.bDec);
    writeBuffer(gpu, p.enc.m, s.adam.encW.m);
    writeBuffer(gpu, p.enc.v, s.adam.encW.v);
    writeBuffer(gpu, p.dec.m, s.adam.decW.m);
    writeBuffer(gpu, p.dec.v, s.adam.decW.v);
    writeBuffer(gpu, p.bias.m, s.adam.bDec.m);
    writeBuffer(gpu, p.bias.v, s.adam.bDec.v);
    writeBuffer(gpu, p.since, s.tokensSinceFired);
    this.#since = s.tokensSinceFired.slice();
    this.#sinceStep = s.step;
    this.#parentsHost = s.parents.map((x) => x.slice());
    if (this.config.arch === "tree") {
      const flat = new Int32Array(this.#n);
      const off = layerOffsets(this.config);
      s.parents.forEach((par, l) => flat.set(par, off[l]));
      writeBuffer(gpu, p.parents, flat);
      writeBuffer(gpu, p.children!, childLists(flat));
      if (this.#parentsTex) writeParentsTexture(gpu, this.#parentsTex, flat);
    }
    this.#step = s.step;
    this.#threshold = s.threshold;
  }

  /**
   * Profile the steps enqueued from now on as the `profile` option does (`false` stops). A
   * profiled step waits for its own statistics before `enqueueStep` returns, so a caller that
   * keeps steps in flight profiles one now and then, behind steps already queued: the GPU then
   * runs it at working clocks (bench/train_step.ts `--profile --back-to-back`).
   */
  setProfile(profile: boolean | PhaseTiming) {
    this.#opts = { ...this.#opts, profile };
  }

  /** The phase timer when profiling (created on first use), else undefined. */
  #timer(): PhaseTimer | undefined {
    if (!this.#opts.profile) return undefined;
    const timing = this.#opts.profile === true ? defaultPhaseTiming(this.#gpu) : this.#opts.profile;
    if (this.#phaseTimer?.timing !== timing) {
      this.#phaseTimer?.destroy();
      this.#phaseTimer = new PhaseTimer(this.#gpu, timing);
    }
    return this.#phaseTimer;
  }

  /** One optimiser step on x [B, d]: everything on the GPU in one submit, one readback. */
  async step(x: BatchValues, B: number): Promise<StepStats> {
    return await (await this.enqueueStep(x, B)).stats();
  }

  /**
   * Record and submit one optimiser step; resolves once it is submitted, with a promise of its
   * statistics. The next step may be enqueued before that promise settles: the GPU then never
   * waits for the host between steps (Deno resolves a readback ≥ 10 ms after the work is done).
   * Await each `enqueueStep` before calling it again; every other method first waits for the
   * steps in flight. The weights are the same as with `step` one at a time.
   */
  async enqueueStep(x: BatchValues, B: number): Promise<StepTicket> {
    if (this.#recording) {
      throw new ArborError(
        "GpuEngine: a step is being recorded; await enqueueStep before the next",
      );
    }
    this.#recording = true;
    try {
      return await this.#enqueue(x, B);
    } finally {
      this.#recording = false;
    }
  }

  async #enqueue(x: BatchValues, B: number): Promise<StepTicket> {
    checkBatch(x, B, this.#d);
    const gpu = this.#gpu;
    if (this.#step === 0) {
      // b_dec init (DESIGN §4): geometric median of the first standardised batch, on the host.
      const { xs } = standardize(batchValuesF32(x), B, this.#d);
      writeBuffer(gpu, this.#p.bias.param, geometricMedian(xs, B, this.#d));
    }
    const bb = await this.#batchBuffers(B);
    // f16 batches go up as they are (half the bytes) and are widened on the GPU: widening on the
    // host cost more than a whole step on an H200 (lib/train/batch_source.ts).
    const half = x instanceof Float16Array;
    if (half) {
      bb.xHalf ??= createStorage(gpu, Math.ceil(B * this.#d / 2) * 4, "batch x (f16)");
      writeBuffer(gpu, bb.xHalf, x);
    } else writeBuffer(gpu, bb.x, x);
    const deadBound = this.#deadBounds();
    const kAux = deadBound.map((c) => Math.min(this.config.auxK, c));
    const n = this.#n;
    const d = this.#d;
    const p = this.#p;
    const rec = new Recording(this.#timer(), !!this.#opts.profileDispatches);
    rec.command((enc) => {
      enc.clearBuffer(bb.counts);
      enc.clearBuffer(bb.active);
      // A group without AuxK this step keeps ê = 0 so its loss sums stay defined.
      kAux.forEach((k, a) => k === 0 && enc.clearBuffer(bb.aux[a].ehat));
    });
    if (kAux.some((k) => k > 0)) {
      // AuxK's candidates from the counters on the GPU, as the previous step left them.
      rec.push(
        ...deadMaskOp(gpu, { since: p.since, dead: bb.dead }, {
          n,
          deadTokens: this.config.deadTokens,
        }),
      );
    } else rec.command((enc) => enc.clearBuffer(bb.dead));
    if (half) rec.push(unpackF16Op(gpu, bb.xHalf!, bb.x, B * d));
    rec.push(...standardizeOp(gpu, { x: bb.x, xs: bb.xs, mean: bb.mean, std: bb.std }, { B, d }));
    rec.mark("standardize");
    this.#forward(rec, bb, "train", kAux, deadBound);
    rec.command((enc) => bb.backward.encode(enc, this.#backwardBuffers(bb, kAux), rec.timer));
    const t = this.#step + 1;
    const lr = this.config.lr;
    // Software adapters: every value before the step is read through textures: the weights from
    // those the forward copied them into, grad and moments chunk by chunk from the scratch (texel
    // fetches gather across the SIMD lanes; storage loads loop over them).
    const decBefore = this.#decTexView;
    const encBefore = bb.gemmTexViews?.encW;
    const scratch = this.#adamScratch;
    if (decBefore && encBefore && scratch) {
      const textured = (tensor: AdamTensor, param: GPUTextureView, decoder: boolean) => {
        const shape = { rows: n, cols: d, decoder };
        for (const c of adamTexturedChunks(gpu, tensor, { param, scratch }, shape, { lr, t })) {
          rec.command(c.copy);
          rec.push(...c.dispatches);
        }
      };
      textured(p.dec, decBefore, true);
      rec.mark("adam: decoder rows");
      textured(p.enc, encBefore, false);
    } else {
      rec.push(...adamDecoderRowsOp(gpu, p.dec, n, d, { lr, t }));
      rec.mark("adam: decoder rows");
      rec.push(...adamDenseOp(gpu, p.enc, n * d, { lr, t }));
    }
    rec.push(...adamDenseOp(gpu, p.bias, d, { lr, t }));
    rec.mark("adam: encoder, b_dec");
    rec.push(
      ...fireCountOp(gpu, { idx: bb.idx, val: bb.val, counts: bb.counts, active: bb.active }, {
        B,
        K: this.#K,
      }),
      ...deadUpdateOp(gpu, { counts: bb.counts, since: p.since }, { n, tokens: B }),
    );
    rec.mark("dead tracking");
    // The statistics are copied in the same submit, before a later step reuses the buffers.
    const readback = this.#statsCopy(rec, bb);
    // Error scopes cost a device round trip each (~10 ms on Deno): check the first step of
    // each batch shape, whose command stream every later step repeats. The earlier steps'
    // readbacks start only once this step is recorded: Deno's mapAsync holds the host until all
    // submitted work is done, so the GPU ran while this step was recorded and waits only for the
    // submit (bench/README.md, "H100: statistics mapped at the next submit").
    await rec.submit(
      gpu,
      bb.checked ? undefined : "SAE training step",
      () => this.#startReadbacks(),
      this.hostMs,
    );
    bb.checked = true;
    this.#unread.push({ step: t, start: readback.start, cancel: readback.cancel });
    this.#step = t;
    this.#pendingTokens += B;
    const stats = readback.bytes.then((raw) => {
      this.#pendingTokens -= B;
      return this.#statsFrom(raw, t, B);
    });
    let ready = false;
    // Also marks the promise handled, so that a step nobody awaits (the run failed elsewhere)
    // cannot crash the process; `stats()` still sees the error.
    stats.then(() => ready = true, () => ready = true);
    this.#inflight = stats;
    if (rec.timer) {
      this.#startReadbacks();
      await stats;
      this.lastProfile = await rec.timer.read();
      this.lastProfileCpu = rec.timer.readCpu();
    }
    // Only this step's and earlier readbacks: starting a later step's would wait for it too.
    const startReadbacks = () => this.#startReadbacks(t);
    return {
      stats: () => {
        startReadbacks();
        return stats;
      },
      get ready() {
        return ready;
      },
    };
  }

  /** Start the readbacks not started yet of the submitted steps up to `upTo`, oldest first. */
  #startReadbacks(upTo = Infinity) {
    const unread = this.#unread;
    let i = 0;
    while (i < unread.length && unread[i].step <= upTo) unread[i++].start();
    this.#unread = unread.slice(i);
  }

  /** Wait until every enqueued step's statistics are in (their errors are the steps' to report). */
  async #drain(): Promise<void> {
    this.#startReadbacks();
    const last = this.#inflight;
    this.#inflight = null;
    if (last) await last.catch(() => {});
  }

  /**
   * Forward dispatches after standardisation: per row chunk the encoder GEMM, the selection and
   * the AuxK candidates (the chunk's pre is consumed before the next chunk overwrites it), then
   * level reconstructions, AuxK reconstructions and the loss sums (into bb.scal).
   * `kAux` per group: 0 skips the group (its ê is cleared so its loss sums stay defined);
   * `deadBound` per group: the bound on its dead features that `kAux` came from.
   */
  #forward(
    out: Recording,
    bb: BatchBuffers,
    mode: "train" | "inference",
    kAux: number[] = [],
    deadBound: number[] = [],
  ): void {
    const gpu = this.#gpu;
    const { n, d } = { n: this.#n, d: this.#d };
    const B = bb.B;
    const p = this.#p;
    const tex = bb.gemmTex;
    const decTex = this.#decTex;
    if (tex && decTex) {
      // Texture mirrors of this step's xs, encW and decW for the texture GEMM and decode.
      out.command((enc) => {
        encodeGemmTextureCopies(enc, tex, { xs: bb.xs, encW: p.enc.param });
        encodeMatrixTextureCopy(enc, p.dec.param, decTex);
      });
      out.mark("texture copies");
    }
    // BatchTopK's threshold spans the batch: every chunk keeps its own pre buffer until the
    // selection ran. The other archs select per chunk and reuse one buffer.
    const batchTopK = this.config.arch === "batchtopk" && mode === "train";
    const thresholded = this.config.arch === "batchtopk" && mode === "inference" &&
      this.#threshold >= 0;
    const chunks: PreChunk[] = [];
    for (let r0 = 0, c = 0; r0 < B; r0 += bb.chunkRows, c++) {
      const rows = Math.min(bb.chunkRows, B - r0);
      const pre = bb.pre[batchTopK ? c : 0];
      chunks.push({ pre, rows, rowOffset: r0 });
      // The chunk maxima serve selectTopKOp below (not BatchTopK's training selection). With
      // them the top-k reads a few chunks of pre, from its buffer as well: the texture mirror is
      // for AuxK's selection then.
      const cmax = batchTopK ? undefined : bb.cmax;
      const auxRuns = mode === "train" && kAux.some((k) => k > 0);
      const preTex = cmax && tex && !auxRuns ? undefined : bb.preTex;
      // Where the selections read pre through the texture only, the subgroup GEMM writes it there
      // instead of into the buffer (no copy): the tree, and the others while AuxK runs. BatchTopK's
      // training selection reads the buffer.
      const preOut = tex && preTex && !batchTopK && gemmWritesChunkMax(textureGemmBlock(gpu, n))
        ? preTex.view
        : undefined;
      if (tex) {
        const outs = { bDec: p.bias.param, pre, ...(cmax ? { cmax } : {}) };
        out.push(
          ...textureGemmOp(gpu, tex, { ...outs, ...(preOut ? { preOut } : {}) }, {
            rows,
            rowOffset: r0,
          }),
        );
      } else {
        out.push(
          ...encoderGemmOp(gpu, { xs: bb.xs, encW: p.enc.param, bDec: p.bias.param, pre }, {
            d,
            n,
            rows,
            rowOffset: r0,
            ...(this.#opts.gemmVariant ? { variant: this.#opts.gemmVariant } : {}),
          }),
        );
      }
      out.mark("encoder GEMM");
      if (preTex && !preOut) {
        // The selections read this chunk's pre through its texture mirror (software adapters).
        out.command((enc) => encodePreTextureCopy(enc, pre, preTex, rows));
        out.mark("pre texture copy");
      }
      const sel = {
        pre,
        preTex,
        ...(cmax && tex ? { cmax } : {}),
        layerTable: this.#layerTable,
        parents: p.parents,
        ...(this.#parentsTex ? { parentsTex: this.#parentsTex } : {}),
        ...(p.children ? { children: p.children } : {}),
        idx: bb.idx,
        val: bb.val,
      };
      if (thresholded) {
        // BatchTopK inference with θ set: the per-row top K, then only the slots above θ.
        const wide = { ...sel, layerTable: this.#batchLayerTable! };
        out.push(...selectTopKOp(gpu, wide, this.#batchLayout(), { n, rows, rowOffset: r0 }));
      } else if (!batchTopK) {
        out.push(...selectTopKOp(gpu, sel, this.#layout, { n, rows, rowOffset: r0 }));
      }
      out.mark("top-k");
      if (mode === "train") {
        // AuxK reads the main codes only for the tree gate, which BatchTopK does not have.
        this.#groups.forEach((_, a) => {
          if (!kAux[a]) return;
          out.push(...selectAuxOp(
            gpu,
            { ...sel, dead: bb.dead, auxIdx: bb.aux[a].idx, auxVal: bb.aux[a].val },
            this.#layout,
            {
              n,
              rows,
              rowOffset: r0,
              auxLayer: this.config.arch === "tree" ? a : 0,
              kAux: kAux[a],
              deadBound: deadBound[a],
            },
          ));
        });
        out.mark("AuxK selection");
      }
    }
    if (batchTopK) {
      out.push(...batchTopKOp(
        gpu,
        {
          chunks,
          layerTable: this.#batchLayerTable!,
          idx: bb.idx,
          val: bb.val,
          minKept: bb.minKept,
          scratch: bb.batchScratch!,
        },
        { B, n, k: this.config.k, K: this.#K },
      ));
      out.mark("top-k");
    }
    if (thresholded) {
      out.push(...thresholdFilterOp(gpu, { idx: bb.idx, val: bb.val }, {
        B,
        K: this.#K,
        theta: this.#threshold,
      }));
    }
    if (mode === "inference") return;
    out.push(...this.#decodeOps({
      idx: bb.idx,
      val: bb.val,
      levelBounds: this.#levelBounds,
      out: bb.recon,
    }, {
      B,
      K: this.#K,
      plan: this.#levelPlan,
      withBias: true,
    }));
    out.mark("sparse decode");
    // The dead list with ranks, filled by this step's AuxK selection.
    const list = deadListBuffer(gpu, bb.dead, this.#n);
    for (let a = 0; a < this.#groups.length; a++) {
      if (!kAux[a]) continue;
      const { idx, val, ehat, starts } = bb.aux[a];
      const blocks = this.#auxBlocks[a];
      const K = kAux[a];
      let sparse: Dispatch[];
      // Blocks of the blocked decode (each a no-op on rows without slots in it), else undefined.
      let blocked: SlotBlocks | undefined;
      if (blocks && starts && bb.auxRegroup && this.#decTex) {
        blocked = blocks;
        // Regroup every row's AuxK slots by block of dead features (in place, through the
        // scratch), then decode block by block: each block's decoder rows stay in the CPU caches.
        const g = bb.auxRegroup;
        out.push(...groupSlotsOp(gpu, { idx, val, idxOut: g.idx, valOut: g.val, starts, list }, {
          B,
          K,
          n: this.#n,
          blocks,
        }));
        out.command((enc) => {
          enc.copyBufferToBuffer(g.idx, 0, idx, 0, B * K * 4);
          enc.copyBufferToBuffer(g.val, 0, val, 0, B * K * 4);
        });
        // Slots sit in blocks below ⌈dead / block⌉ only; a bound on the dead count is enough.
        const upTo = Math.min(
          blocks.nb,
          Math.ceil(deadBound[a] / 2 ** blocks.shift),
        );
        sparse = blockedTextureDecodeOp(gpu, this.#decTex, {
          idx,
          val,
          bDec: p.bias.param,
          out: ehat,
          starts,
        }, { B, d, K, withBias: false, blocks, upTo: Math.max(1, upTo) });
      } else {
        sparse = this.#decodeOps({
          idx,
          val,
          levelBounds: this.#auxBounds(K),
          out: ehat,
        }, { B, K, plan: singleLevel(K), withBias: false });
      }
      const x = mode === "train" ? bb.backward.denseAux(a) : undefined;
      // The plan gates at most MAX_GATED dispatches: the dense ones, and the sparse decode's. Past
      // that the blocked decode's later blocks run ungated, which is right on either path: when
      // the dense one is taken (D ≤ dcap) no slot lies in a block past ⌈dcap / block rows⌉.
      const room = MAX_GATED - 3;
      const needed = blocked
        ? Math.min(sparse.length, Math.ceil((x?.dcap ?? 0) / 2 ** blocked.shift))
        : sparse.length;
      if (!x || needed > room) {
        out.push(...sparse);
        continue;
      }
      // Few dead features (the plan decides on the GPU, as in the backward): ê = A_f·W_d as one
      // texture GEMM over the dead decoder rows instead of the slot-by-slot decode.
      const dense = [
        scatterCodesOp(gpu, x, { idx, val, list }, { ka: K }),
        gatherColsOp(gpu, x, { list, decW: p.dec.param }),
      ];
      const product = decodeProductOp(gpu, x, ehat);
      out.push(planOp(gpu, x, list, [
        ...sparse.slice(0, room).map((dispatch) => ({ dispatch, dense: false })),
        ...[...dense, product].map((dispatch) => ({ dispatch, dense: true })),
      ], x.argsF));
      out.command((enc) => enc.clearBuffer(x.af));
      out.push(...dense);
      out.command((enc) => encodeDecodeCopies(enc, x));
      out.push(product, ...sparse);
    }
    out.mark("AuxK decode");
    const lossTex = bb.lossTex;
    if (lossTex) {
      // The loss sums read recon and ê through textures (software adapters), xs through the GEMM's.
      out.command((enc) => {
        encodeMatrixTextureCopy(enc, bb.recon, lossTex.levels);
        bb.aux.forEach((a, i) => encodeMatrixTextureCopy(enc, a.ehat, lossTex.aux[i]));
      });
    }
    out.push(...lossTermsOp(
      gpu,
      {
        xs: bb.xs,
        levels: bb.recon,
        aux: this.#groups.map((g, a) => ({ ehat: bb.aux[a].ehat, level: g.level })),
        partials: bb.partials,
        blocks: bb.lossBlocks,
        terms: bb.scal,
        ...(lossTex ? { textures: lossTex.views } : {}),
      },
      { B, d, L: this.#L },
    ));
    out.mark("loss sums");
  }

  /** The dispatches of a sparse decode: from the decW texture where the engine mirrors it, else storage. */
  #decodeOps(
    bufs: { idx: GPUBuffer; val: GPUBuffer; levelBounds: GPUBuffer; out: GPUBuffer },
    sizes: { B: number; K: number; plan: LevelPlan; withBias: boolean },
  ): Dispatch[] {
    const p = this.#p;
    const full = { ...bufs, bDec: p.bias.param };
    const s = { ...sizes, d: this.#d };
    if (this.#decTex) {
      return textureDecodeOp(this.#gpu, this.#decTex, full, s);
    }
    return sparseDecodeOp(this.#gpu, { ...full, decW: p.dec.param }, s);
  }

  /** Level-bounds buffer of a single AuxK level of `k` slots (cached per k). */
  #auxBounds(k: number): GPUBuffer {
    let b = this.#auxBoundsCache.get(k);
    if (!b) {
      this.#auxBoundsCache.set(
        k,
        b = createLevelBounds(this.#gpu, singleLevel(k), `aux bounds ${k}`),
      );
    }
    return b;
  }

  /** Inference codes for x [B, d]: the training selection (batchtopk: threshold θ once set). */
  async encode(x: Float32Array, B: number): Promise<EncodeResult> {
    await this.#drain();
    const bb = await this.#inference(x, B, false);
    const K = this.#inferenceK();
    const [idx, val] = [
      await readU32(this.#gpu, bb.idx, B * K),
      await readF32(this.#gpu, bb.val, B * K),
    ];
    return { idx, val, K };
  }

  /** Inference reconstruction of x [B, d] in the raw space (decode, then undo standardisation). */
  async reconstruct(x: Float32Array, B: number): Promise<Float32Array> {
    await this.#drain();
    const bb = await this.#inference(x, B, true);
    return await readF32(this.#gpu, bb.x, B * this.#d);
  }

  /**
   * Slots per row at inference: the training K, except BatchTopK before θ is set, which encodes
   * with TopK (k slots) as the reference does; once θ is set, K slots filtered by θ.
   */
  #inferenceK(): number {
    return this.config.arch === "batchtopk" && this.#threshold < 0 ? this.config.k : this.#K;
  }

  /** BatchTopK's inference selection: one ungated layer of K = min(n, 4k) slots. */
  #batchLayout(): SelectionLayout {
    return { sizes: [this.#n], kPerLayer: [this.#K], gated: false };
  }

  /** Run standardisation, GEMM and selection (and with `decode`, the raw-space reconstruction). */
  async #inference(x: Float32Array, B: number, decode: boolean): Promise<BatchBuffers> {
    checkBatch(x, B, this.#d);
    const gpu = this.#gpu;
    const bb = await this.#batchBuffers(B);
    writeBuffer(gpu, bb.x, x);
    const d = this.#d;
    const rec = new Recording();
    rec.push(...standardizeOp(gpu, { x: bb.x, xs: bb.xs, mean: bb.mean, std: bb.std }, { B, d }));
    this.#forward(rec, bb, "inference");
    if (decode) {
      // All slots form the full reconstruction (the last level); it lands in recon[0], and
      // un-standardised into bb.x (the batch is no longer needed).
      const K = this.#inferenceK();
      rec.push(...this.#decodeOps({
        idx: bb.idx,
        val: bb.val,
        levelBounds: this.#auxBounds(K),
        out: bb.recon,
      }, {
        B,
        K,
        plan: singleLevel(K),
        withBias: true,
      }));
      rec.push(
        ...unstandardizeOp(gpu, { xhs: bb.recon, out: bb.x, mean: bb.mean, std: bb.std }, { B, d }),
      );
    }
    await rec.submit(gpu, "SAE inference");
    return bb;
  }

  /**
   * Per group, an upper bound on its dead features this step (0 when α = 0); the step dispatches
   * min(auxK, bound) AuxK slots. The counters on the host are those of the last step whose
   * statistics are in; the steps still in flight add at most their rows to each, so a feature can
   * only be dead now if its counter plus those rows reaches deadTokens. With nothing in flight this
   * is exact. The selection takes min(slots, candidates), so a bound gives the same codes as the
   * exact count.
   */
  #deadBounds(): number[] {
    const dt = this.config.deadTokens;
    const ahead = this.#pendingTokens;
    return this.#groups.map((g) => {
      if (!(g.alpha > 0)) return 0;
      let c = 0;
      for (let f = g.start; f < g.end; f++) if (this.#since[f] + ahead >= dt) c++;
      return c;
    });
  }

  /** Indices of the aux groups that can carry gradient (α > 0 and auxK > 0). */
  #auxInBackward(): number[] {
    return this.#groups.flatMap((g, a) => (g.alpha > 0 && this.config.auxK > 0 ? [a] : []));
  }

  /** Buffers for batch size B (kept while B stays the same). */
  async #batchBuffers(B: number): Promise<BatchBuffers> {
    if (this.#batch?.B === B) return this.#batch;
    await this.#drain(); // steps in flight still use the old buffers
    this.#destroyBatch();
    const gpu = this.#gpu;
    const { n, d, L, K } = { n: this.#n, d: this.#d, L: this.#L, K: this.#K };
    const limit = Math.min(maxGemmChunkRows(gpu, n), this.#opts.maxChunkRows ?? Infinity);
    if (limit < 1) {
      throw new ArborError(
        `SAE config: one row of ${n} pre-activations exceeds the storage binding limit`,
      );
    }
    // Equal chunks (4096 rows at n = 24576 under 128 MiB: 4 × 1024, not 3 × 1365 + 1).
    let chunkRows = Math.ceil(B / Math.ceil(B / Math.min(B, limit)));
    // The selection binds pre as vec4, padded to 16 bytes: keep the padded chunk under the limit.
    while (
      chunkRows > 1 && preChunkBytes(chunkRows, n) > gpu.device.limits.maxStorageBufferBindingSize
    ) chunkRows--;
    const off = layerOffsets(this.config);
    const levelEnds = this.#L === 1 ? [n] : off.slice(1);
    const auxGroups = this.#auxInBackward().map((a) => ({ g: this.#groups[a], a }));
    const denseGemm = denseAuxGemm(gpu, B, d, this.#opts.denseAux);
    const f32 = (len: number, label: string) => createStorage(gpu, len * 4, label);
    const backward = await SparseBackward.create(gpu, {
      B,
      d,
      n,
      levelEnds,
      k: K,
      aux: auxGroups.map(({ g, a }) => ({
        k: Math.min(this.config.auxK, g.end - g.start),
        level: g.level,
        alpha: g.alpha,
        denomIndex: scalAuxDenom(L, a),
        // The group's AuxK gradient rows as GEMMs when few are dead (by default software adapters).
        ...(denseGemm ? { dense: { base: g.start, end: g.end, gemm: denseGemm } } : {}),
      })),
      totalVarIndex: SCAL_TOTAL_VAR,
      // Software adapters: the backward gathers decW, encW and xs rows from the textures the
      // forward copied them into (Adam changes the weights only after the backward), U from its own.
      textures: !!this.#decTexView,
    });
    // Software adapters: the texture GEMM's mirrors of xs and encW, and those the loss sums read.
    const textures = this.#decTex && (() => {
      const gemmTex = createGemmTextures(gpu, { B, d, n });
      const gemmTexViews = {
        xs: matrixTextureView(gemmTex.xs),
        encW: matrixTextureView(gemmTex.encW),
      };
      const levels = createMatrixTexture(gpu, L * B, d, "level reconstructions texture");
      const aux = this.#groups.map(() => createMatrixTexture(gpu, B, d, "aux recon texture"));
      const views = {
        xs: gemmTexViews.xs,
        levels: matrixTextureView(levels),
        aux: aux.map(matrixTextureView),
      };
      return { gemmTex, gemmTexViews, lossTex: { levels, aux, views } };
    })();
    this.#batch = {
      B,
      chunkRows,
      x: f32(B * d, "x"),
      xs: f32(B * d, "xs"),
      mean: f32(B, "mean"),
      std: f32(B, "std"),
      pre: Array.from(
        { length: this.config.arch === "batchtopk" ? Math.ceil(B / chunkRows) : 1 },
        (_, c) =>
          createStorage(
            gpu,
            preChunkBytes(Math.min(chunkRows, B - c * chunkRows), n),
            `pre chunk ${c}`,
          ),
      ),
      minKept: f32(1, "batchtopk min kept"),
      ...(this.config.arch === "batchtopk" ? { batchScratch: createBatchTopKScratch(gpu, B) } : {}),
      idx: f32(B * K, "codes idx"),
      val: f32(B * K, "codes val"),
      recon: f32(L * B * d, "level reconstructions"),
      aux: this.#groups.map((g, a) => {
        const ka = Math.max(1, Math.min(this.config.auxK, g.end - g.start));
        const blocks = this.#auxBlocks[a];
        return {
          idx: f32(B * ka, "aux idx"),
          val: f32(B * ka, "aux val"),
          ehat: f32(B * d, "aux recon"),
          ...(blocks ? { starts: f32(B * (blocks.nb + 1), "aux block starts") } : {}),
        };
      }),
      ...(this.#auxBlocks.some((b) => b)
        ? {
          auxRegroup: {
            idx: f32(B * Math.max(1, this.config.auxK), "aux regroup idx"),
            val: f32(B * Math.max(1, this.config.auxK), "aux regroup val"),
          },
        }
        : {}),
      scal: f32(scalLength(L, this.#groups.length), "loss scalars"),
      partials: f32(lossTermCount(L, this.#groups.length) * d, "loss partial sums"),
      lossBlocks: f32(
        lossBlocksLength(B, d, lossTermCount(L, this.#groups.length)),
        "loss block sums",
      ),
      dead: f32(n, "dead mask"),
      counts: f32(n, "fire counts"),
      active: f32(n, "active counts"),
      backward,
      checked: false,
      ...textures,
      ...(this.#decTex && preTextureSupported(gpu, chunkRows, n)
        ? { preTex: createPreTexture(gpu, chunkRows, n) }
        : {}),
      ...(this.#decTex && gemmWritesChunkMax(textureGemmBlock(gpu, n)) &&
          chunkMaximaServe(this.#layout)
        ? { cmax: f32(chunkMaxLength(chunkRows, n), "pre chunk maxima") }
        : {}),
    };
    return this.#batch;
  }

  #backwardBuffers(bb: BatchBuffers, kAux: number[]) {
    const p = this.#p;
    return {
      xs: bb.xs,
      recon: bb.recon,
      scal: bb.scal,
      idx: bb.idx,
      val: bb.val,
      aux: this.#auxInBackward().map((a) => ({
        ...bb.aux[a],
        k: kAux[a],
        deadList: deadListBuffer(this.#gpu, bb.dead, this.#n),
      })),
      encW: p.enc.param,
      decW: p.dec.param,
      decTex: this.#decTexView,
      xsTex: bb.gemmTexViews?.xs,
      encTex: bb.gemmTexViews?.encW,
      bDec: p.bias.param,
      gradEnc: p.enc.grad,
      gradDec: p.dec.grad,
      gradB: p.bias.grad,
    };
  }

  /**
   * Record a copy of the step's scalars, fire/active counts, dead counters and dead mask into a
   * fresh staging buffer. `start` maps it (once, after the submit); `bytes` then resolves.
   * `cancel` instead frees it and rejects `bytes`.
   */
  #statsCopy(
    rec: Recording,
    bb: BatchBuffers,
  ): { start: () => void; cancel: () => void; bytes: Promise<ArrayBuffer> } {
    const gpu = this.#gpu;
    const n = this.#n;
    const S = scalLength(this.#L, this.#groups.length);
    const parts: [GPUBuffer, number][] = [
      [bb.scal, S],
      [bb.minKept, 1],
      [bb.counts, n],
      [bb.active, n],
      [this.#p.since, n],
      [bb.dead, n],
    ];
    const total = parts.reduce((a, [, len]) => a + len, 0) * 4;
    const staging = gpu.device.createBuffer({
      size: total,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "step stats readback",
    });
    rec.command((encoder) => {
      let at = 0;
      for (const [buf, len] of parts) {
        encoder.copyBufferToBuffer(buf, 0, staging, at, len * 4);
        at += len * 4;
      }
    });
    let start!: () => void;
    let cancel!: () => void;
    const bytes = new Promise<ArrayBuffer>((resolve, reject) => {
      cancel = () => {
        staging.destroy();
        reject(new ArborError("GpuEngine was destroyed before this step's statistics were read"));
      };
      start = () => {
        // mapAsync is called here, synchronously: Deno waits for the GPU inside this call.
        staging.mapAsync(GPUMapMode.READ).then(() => {
          const raw = staging.getMappedRange().slice(0);
          // Unmap before destroy: destroying a mapped buffer corrupted Deno's heap at exit.
          staging.unmap();
          resolve(raw);
        }).catch(reject).finally(() => staging.destroy());
      };
    });
    return { start, cancel, bytes };
  }

  /** The statistics of step `step` (B rows) from the bytes `#statsCopy` read back. */
  #statsFrom(raw: ArrayBuffer, step: number, B: number): StepStats {
    const n = this.#n;
    const S = scalLength(this.#L, this.#groups.length);
    const scal = new Float32Array(raw, 0, S);
    const minKept = new Float32Array(raw, S * 4, 1)[0];
    const counts = new Uint32Array(raw, (S + 1) * 4, n).slice();
    const active = new Uint32Array(raw, (S + 1 + n) * 4, n);
    if (step > this.#sinceStep) {
      this.#since = new Uint32Array(raw, (S + 1 + 2 * n) * 4, n).slice();
      this.#sinceStep = step;
    }
    const since = new Uint32Array(raw, (S + 1 + 2 * n) * 4, n);
    const dead = new Uint32Array(raw, (S + 1 + 3 * n) * 4, n);
    // kAux of each group as the reference counts it: min(auxK, dead features), 0 when α = 0.
    const kAux = this.#groups.map((g) => {
      let c = 0;
      for (let f = g.start; f < g.end; f++) c += dead[f];
      return g.alpha > 0 ? Math.min(this.config.auxK, c) : 0;
    });
    const L = this.#L;
    const totalVar = scal[SCAL_TOTAL_VAR];
    const mainLoss = Array.from({ length: L }, (_, l) => scal[scalLevel(l)] / totalVar);
    const auxLoss = this.#groups.map((_, a) => {
      const denom = scal[scalAuxDenom(L, a)];
      return kAux[a] > 0 && denom > 0 ? scal[scalAuxSse(L, a)] / denom : 0;
    });
    const loss = mainLoss.reduce((x, y) => x + y, 0) +
      auxLoss.reduce((acc, v, a) => acc + this.#groups[a].alpha * v, 0);
    if (this.config.arch === "batchtopk") {
      this.#updateThreshold(minKept);
    }
    const off = layerOffsets(this.config);
    const dt = this.config.deadTokens;
    const l0PerLayer = this.config.layers.map((_, l) => {
      let c = 0;
      for (let f = off[l]; f < off[l + 1]; f++) c += active[f];
      return c / B;
    });
    const deadFraction = this.config.layers.map((size, l) => {
      let c = 0;
      for (let f = off[l]; f < off[l + 1]; f++) if (since[f] >= dt) c++;
      return c / size;
    });
    return {
      step,
      loss,
      mainLoss,
      auxLoss,
      fvu: mainLoss[L - 1],
      l0: l0PerLayer.reduce((x, y) => x + y, 0),
      l0PerLayer,
      deadFraction,
      fireCounts: counts,
    };
  }

  #updateThreshold(minKept: number) {
    if (!(minKept > 0)) return; // nothing positive kept: keep θ (as the reference does)
    this.#threshold = this.#threshold < 0
      ? minKept
      : THRESHOLD_DECAY * this.#threshold + (1 - THRESHOLD_DECAY) * minKept;
  }

  /** A copy of the full state, read back from the GPU. */
  async readState(): Promise<SaeState> {
    await this.#drain();
    const gpu = this.#gpu;
    const p = this.#p;
    const f = (b: GPUBuffer) => readF32(gpu, b);
    return {
      encW: await f(p.enc.param),
      decW: await f(p.dec.param),
      bDec: await f(p.bias.param),
      parents: this.#parentsHost.map((x) => x.slice()),
      adam: {
        encW: { m: await f(p.enc.m), v: await f(p.enc.v) },
        decW: { m: await f(p.dec.m), v: await f(p.dec.v) },
        bDec: { m: await f(p.bias.m), v: await f(p.bias.v) },
      },
      tokensSinceFired: await readU32(gpu, p.since),
      threshold: this.#threshold,
      step: this.#step,
    };
  }

  /** Replace the state (shapes checked); gradients stay zero. */
  async writeState(state: SaeState): Promise<void> {
    checkStateShapes(this.config, state);
    await this.#drain();
    this.#upload(cloneState(state));
  }

  /** Free every GPU buffer of the engine. */
  destroy(): void {
    // Statistics nobody asked for are dropped, not mapped: no map may be pending past destroy.
    for (const u of this.#unread) u.cancel();
    this.#unread = [];
    this.#destroyBatch();
    const p = this.#p;
    for (const t of [p.enc, p.dec, p.bias]) for (const b of Object.values(t)) b.destroy();
    p.since.destroy();
    p.parents.destroy();
    p.children?.destroy();
    this.#layerTable.destroy();
    this.#batchLayerTable?.destroy();
    this.#levelBounds.destroy();
    for (const b of this.#auxBoundsCache.values()) b.destroy();
    this.#decTex?.texture.destroy();
    this.#parentsTex?.texture.destroy();
    if (this.#adamScratch) destroyAdamScratch(this.#adamScratch);
    this.#phaseTimer?.destroy();
  }

  #destroyBatch() {
    const b = this.#batch;
    if (!b) return;
    b.backward.destroy();
    b.xHalf?.destroy();
    for (
      const buf of [
        b.x,
        b.xs,
        b.mean,
        b.std,
        ...b.pre,
        b.minKept,
        b.idx,
        b.val,
        b.recon,
        b.scal,
        b.partials,
        b.lossBlocks,
        b.dead,
        b.counts,
        b.active,
      ]
    ) {
      buf.destroy();
    }
    for (const a of b.aux) for (const buf of Object.values(a)) buf.destroy();
    b.auxRegroup?.idx.destroy();
    b.auxRegroup?.val.destroy();
    if (b.batchScratch) { for (const buf of Object.values(b.batchScratch)) buf.destroy(); }
    b.gemmTex?.xs.texture.destroy();
    b.preTex?.texture.destroy();
    if (b.lossTex) { for (const t of [b.lossTex.levels, ...b.lossTex.aux]) t.texture.destroy(); }
    b.cmax?.destroy();
    b.gemmTex?.encW.texture.destroy();
    this.#batch = undefined;
  }
}

/** Offsets into the loss-scalar buffer: totalVar, per-level SSE, per aux group (SSE, denom), minKept. */
const SCAL_TOTAL_VAR = 0;
function scalLevel(l: number): number {
  return 1 + l;
}
function scalAuxSse(L: number, a: number): number {
  return 1 + L + 2 * a;
}
function scalAuxDenom(L: number, a: number): number {
  return 2 + L + 2 * a;
}
function scalLength(L: number, A: number): number {
  return lossTermCount(L, A);
}

/** Host milliseconds of a step's submit, by part (`GpuEngine.hostMs`). */
export interface HostTimes {
  record: number;
  readbacks: number;
  submit: number;
}

/**
 * One submit's GPU work in order: kernel dispatches and other encoder commands
 * (clears, copies, the backward pass). `submit` compiles, records into one command encoder,
 * submits and frees the per-call uniforms.
 */
class Recording {
  /** Dispatches and commands; a command may return the encoder to go on with (a wall timer's split). */
  #items: (Dispatch | ((encoder: GPUCommandEncoder) => GPUCommandEncoder | void))[] = [];
  /** When set, `mark` records phase marks into it (timestamps, or a split for wall timing). */
  readonly timer?: PhaseTimer;

  /** Time every dispatch apart (see `GpuEngineOptions.profileDispatches`). */
  readonly perDispatch: boolean;

  constructor(timer?: PhaseTimer, perDispatch = false) {
    this.timer = timer;
    this.perDispatch = perDispatch;
    if (timer) this.#items.push((enc) => timer.begin(enc));
  }

  /** Name the work appended since the last mark (a no-op unless timing). */
  mark(label: string) {
    const timer = this.timer;
    if (timer) this.#items.push((enc) => timer.mark(enc, label));
  }

  /** Append kernel dispatches (with `perDispatch`, each followed by a mark named after its entry). */
  push(...dispatches: Dispatch[]) {
    const timer = this.timer;
    if (!timer || !this.perDispatch) {
      this.#items.push(...dispatches);
      return;
    }
    for (const d of dispatches) {
      this.#items.push(d, (enc) => timer.mark(enc, dispatchMark(d.kernel.entry)));
    }
  }

  /** Append an arbitrary encoder command (returning the encoder to go on with, if it changed). */
  command(fn: (encoder: GPUCommandEncoder) => GPUCommandEncoder | void) {
    this.#items.push(fn);
  }

  /**
   * Record everything into one encoder and submit; inside error scopes named `label` if given.
   * `beforeSubmit` runs between recording and submitting; `times` gathers the host's time in each.
   */
  async submit(gpu: Gpu, label?: string, beforeSubmit?: () => void, times?: HostTimes) {
    const dispatches = this.#items.filter((x): x is Dispatch => typeof x !== "function");
    const pipelines = new Map<Dispatch, GPUComputePipeline>();
    for (const d of dispatches) pipelines.set(d, await getPipeline(gpu, d.kernel));
    const record = () => {
      const t0 = performance.now();
      let encoder = gpu.device.createCommandEncoder({ label: label ?? "SAE step" });
      let run: Dispatch[] = [];
      const flush = () => {
        encodeDispatches(gpu, encoder, run, run.map((d) => pipelines.get(d)!));
        run = [];
      };
      for (const item of this.#items) {
        if (typeof item === "function") {
          flush();
          encoder = item(encoder) ?? encoder;
        } else run.push(item);
      }
      flush();
      const commands = encoder.finish();
      const t1 = performance.now();
      beforeSubmit?.();
      const t2 = performance.now();
      if (this.timer) return this.timer.submit(commands);
      gpu.device.queue.submit([commands]);
      if (times) {
        times.record += t1 - t0;
        times.readbacks += t2 - t1;
        times.submit += performance.now() - t2;
      }
    };
    // A wall-clock timer submits its phases one at a time: awaited after the error scopes, which
    // hold its first submit.
    const submitted = label ? await withErrorScope(gpu, label, record) : record();
    await submitted;
    releaseUniforms(dispatches);
  }
}
