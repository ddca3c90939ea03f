/**
 * Sparse backward pass of the SAE loss on the GPU (kernels/sparse_backward.wgsl).
 *
 * Legend: B tokens, d = d_in, n features, L levels, A aux groups, S = L + A gradient sources.
 * Inputs (GPU buffers, f32 unless said):
 *   xs [B, d], recon [L, B, d] (level reconstructions x̂s_{≤l}), scal f32[] (GPU scalars: totalVar
 *   and each aux group's residual variance), main codes idx u32/val [B, K], aux codes per group
 *   idx u32/val [B, Ka] with ê [B, d], encW/decW [n, d], bDec [d].
 * Outputs: gradEnc, gradDec [n, d] (rows of features with no active entry are left untouched:
 *   the optimiser keeps them zeroed), gradB [d].
 *
 * SPARSE PATH: the per-feature sums are a transpose of the (row, slot) entry lists — a
 * counting sort by feature index (per-row-block histogram, prefix over blocks, scan over
 * features, stable scatter) and one workgroup per feature summing its entries in a fixed
 * order. No dense [B, n] matrix exists; the cost is O(entries · d) plus O(n · d) for b_dec.
 *
 * DENSE AuxK (aux groups given `dense`; by default software adapters): when at most Dcap (≤ 1 536)
 * of the group's features are dead, its AuxK entries' dot products are one GEMM over the dead
 * decoder rows, and the entries skip the sort: scattered by dead rank into [Dcap, B] matrices,
 * their products with U and xs (GEMMs, texture or storage) give the dead features' gradient rows,
 * added after the per-feature sums (./aux_dense.ts). A plan dispatch decides on
 * the GPU from the dead list and gives the other path's dispatches zero workgroups (indirect
 * dispatch), so the weights do not depend on the host. Still no [B, n] matrix.
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { encodeDispatches, getPipeline, kernelName } from "../../gpu/kernel.ts";
import { createStorage, uploadStorage } from "../../gpu/buffer.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { GpuError } from "../../errors.ts";
import { wrapGrid } from "./grid.ts";
import { dispatchSpread, spreadGroups } from "../../gpu/workgroups.ts";
import type { PhaseTimer } from "../../gpu/phase_timer.ts";
import { placeholderTexture } from "../../gpu/texture.ts";
import {
  createMatrixTexture,
  encodeMatrixTextureCopy,
  type MatrixTexture,
  matrixTextureSupported,
  matrixTextureView,
} from "./matrix_texture.ts";
import {
  createDenseAux,
  DENSE_AUX_KERNELS,
  type DenseAux,
  type DenseAuxGemm,
  destroyDenseAux,
  dpreColsPerX,
  dpreProductOp,
  encodeDenseCopies,
  encodeDpreCopies,
  gatherRowsOp,
  mergeOp,
  planOp,
  productOp,
  productRowsPerY,
  rowSumsOp,
  scatterDenseOp,
  transposeOp,
} from "./aux_dense.ts";

/** Invocations per workgroup of every backward kernel. */
const WG = 64;
/** The scatter's per-block cursor table is nBlocks·n u32; keep it under this many entries. */
const MAX_CURSOR_ENTRIES = 1 << 22;
/** Fewest rows a scatter block walks (bounds the block count for small n). */
const MIN_ROWS_PER_BLOCK = 16;
/** Batch rows per b_dec row-block sum (bdec_rows). */
const BDEC_ROWS = 64;
/** Features per b_dec partial sum. */
const BDEC_CHUNK = 256;
/** `Params.src` value meaning "derive the source from the feature's layer". */
const SRC_FROM_LAYER = 0xffffffff;

function kernel(entry: string): Kernel {
  return { file: "sparse_backward.wgsl", entry, constants: { WG } };
}
const K_LEVEL = kernel("level_grad");
const K_AUX = kernel("aux_grad");
const K_LEVEL4 = kernel("level_grad4");
const K_AUX4 = kernel("aux_grad4");
const K_DPRE = kernel("entry_dpre");
const K_DPRE4 = kernel("entry_dpre4");
const K_DPRE4X4 = kernel("entry_dpre4x4");
/** entry_dpre4 and entry_dpre4x4 reading the decoder's and U's rows from their textures. */
const K_DPRE4_TEX: Kernel = { ...K_DPRE4, constants: { WG, ED_TEX: 1 } };
const K_DPRE4X4_TEX: Kernel = { ...K_DPRE4X4, constants: { WG, ED_TEX: 1 } };
/** Invocations per workgroup of entry_dpre_g8 (eight per entry: 32 entries per workgroup). */
const G8_WG = 256;
const K_DPRE_G8: Kernel = {
  file: "sparse_backward.wgsl",
  entry: "entry_dpre_g8",
  constants: { WG: G8_WG },
};
const K_HIST = kernel("histogram");
const K_PREFIX = kernel("block_prefix");
const K_SCAN = kernel("scan_features");
/**
 * scan_features on real GPUs (the "groups" layout): 256 invocations walk 96 features each at n =
 * 24 576 instead of 384, the chain of loads one invocation waits through (H200: 0.10 → 0.07 ms).
 */
const K_SCAN_GPU: Kernel = { ...K_SCAN, constants: { WG: 256 } };
const K_SCATTER = kernel("scatter");
const K_REDUCE = kernel("reduce_features");
/** Columns-block width of reduce_features4 in vec4s: small blocks keep U's block in cache. */
const REDUCE4_WG = 16;
const K_REDUCE4: Kernel = {
  file: "sparse_backward.wgsl",
  entry: "reduce_features4",
  constants: { WG: REDUCE4_WG },
};
/**
 * Column-block width of reduce_features16 in invocations of 16 columns: 48 covers d = 768 in
 * one block (llvmpipe, n = 24576 with AuxK: ~2.3–2.9 s against reduce_features4's 6.6–7.8 s).
 */
const REDUCE16_WG = 48;
const K_REDUCE16: Kernel = {
  file: "sparse_backward.wgsl",
  entry: "reduce_features16",
  constants: { WG: REDUCE16_WG },
};
/** reduce_features16 reading U's and xs's rows from their matrix textures. */
const K_REDUCE16_TEX: Kernel = { ...K_REDUCE16, constants: { WG: REDUCE16_WG, RF_TEX: 1 } };
const K_BPART = kernel("bdec_partial");
/** bdec_partial reading encW's rows from its texture, four columns per invocation. */
const K_BPART_TEX: Kernel = { ...K_BPART, constants: { WG, BQ_TEX: 1 } };
const K_BROWS: Kernel = { ...kernel("bdec_rows"), constants: { WG, BDEC_ROWS } };
const K_BFINAL: Kernel = { ...kernel("bdec_final"), constants: { WG, BDEC_ROWS } };
/** The per-feature sums' kernel for a vector width and read path, its grid interleaved `spread` ways. */
function reduceKernel(vec: number, tex: boolean, spread: number): Kernel {
  const base = vec === 16 ? (tex ? K_REDUCE16_TEX : K_REDUCE16) : vec === 4 ? K_REDUCE4 : K_REDUCE;
  return spread === 1 ? base : { ...base, constants: { ...base.constants, SPREAD: spread } };
}
/** Kernels compiled up front besides the per-feature sums (`reduceKernel`). */
const ALL_KERNELS = [
  K_LEVEL,
  K_AUX,
  K_LEVEL4,
  K_AUX4,
  K_DPRE,
  K_DPRE4,
  K_DPRE4X4,
  K_DPRE_G8,
  K_HIST,
  K_PREFIX,
  K_SCAN,
  K_SCAN_GPU,
  K_SCATTER,
  K_BPART,
  K_BROWS,
  K_BFINAL,
];

/** A step of the backward pass: a dispatch, or a command recorded between compute passes. */
export type BackwardStep = Dispatch | { command: (enc: GPUCommandEncoder) => void; label: string };

/** One AuxK group as the backward pass sees it. */
export interface BackwardAuxGroup {
  /** Largest aux slots per row (Ka) a call may pass; sizes the scratch buffers. */
  k: number;
  /** Level whose residual xs − x̂s_{≤level} the group reconstructs. */
  level: number;
  /** Coefficient α of the term. */
  alpha: number;
  /** Index of the group's residual variance (denominator) in `scal`. */
  denomIndex: number;
  /**
   * The group's features [base, end): when set, its AuxK gradient rows go through the dense
   * products of ./aux_dense.ts whenever few enough of them are dead (decided on the GPU), on
   * `gemm` GEMMs (default texture).
   */
  dense?: { base: number; end: number; gemm?: DenseAuxGemm };
}

/**
 * How the per-entry dot products dpre = U[b]·decW[f] are laid out: "lanes" = one invocation per
 * entry (four per invocation for aux segments; best on llvmpipe, whose workgroups are SIMD lanes of
 * one CPU thread), "groups" = eight invocations per entry reading each row in 128-byte pieces
 * (coalesced loads on real GPUs; d % 4 == 0, else "lanes"). The layout also sizes the feature
 * scan: 256 invocations with "groups", 64 with "lanes".
 */
export type DpreLayout = "lanes" | "groups";

/** Sizes of a backward plan (fixed for its lifetime). */
export interface BackwardShape {
  B: number;
  d: number;
  n: number;
  /** Prefix ends o_l + s_l of the levels (length L; the last is n). */
  levelEnds: number[];
  /** Main slots per row (K). */
  k: number;
  /** AuxK groups with a gradient this step (α > 0 and Ka > 0). */
  aux: BackwardAuxGroup[];
  /** Index of totalVar in `scal`. */
  totalVarIndex: number;
  /** Per-entry dot-product layout (default: "lanes" on software adapters, else "groups"). */
  dpre?: DpreLayout;
  /**
   * Gather rows through matrix textures (software adapters: a texel fetch gathers across the SIMD
   * lanes, a storage load loops over them): decW, xs and encW come as textures too
   * (`BackwardBuffers.decTex`, `xsTex`, `encTex`), U is copied into one; the "lanes" dot products,
   * reduce_features16 and bdec_partial read them. Needs d % 64 == 0 (matrixTextureSupported).
   */
  textures?: boolean;
  /**
   * How many ways the per-feature sums interleave their grid (kernels/sparse_backward.wgsl,
   * SPREAD); default `dispatchSpread(gpu)`. Any value gives the same sums.
   */
  spread?: number;
}

/** Buffers of one backward pass (bound per call, so the engine may swap them). */
export interface BackwardBuffers {
  xs: GPUBuffer;
  /** [L, B, d] level reconstructions. */
  recon: GPUBuffer;
  /** GPU scalars (totalVar, aux denominators). */
  scal: GPUBuffer;
  idx: GPUBuffer;
  val: GPUBuffer;
  /**
   * Per aux group: idx [B, k], val [B, k], ê [B, d]; k = this step's aux slots per row
   * (≤ the shape's Ka; default Ka; 0 = no aux entries this step).
   */
  aux: { idx: GPUBuffer; val: GPUBuffer; ehat: GPUBuffer; k?: number; deadList?: GPUBuffer }[];
  encW: GPUBuffer;
  decW: GPUBuffer;
  /** decW as a matrix texture view (lib/sae/ops/matrix_texture.ts), when the shape has `textures`. */
  decTex?: GPUTextureView;
  /** xs as a matrix texture view, when the shape has `textures`. */
  xsTex?: GPUTextureView;
  /** encW as a matrix texture view, when the shape has `textures`. */
  encTex?: GPUTextureView;
  bDec: GPUBuffer;
  gradEnc: GPUBuffer;
  gradDec: GPUBuffer;
  gradB: GPUBuffer;
}

/**
 * A compiled backward pass for one shape: scratch buffers, uniforms and pipelines made
 * once, then `encode` records the whole pass into a command encoder every step.
 */
export class SparseBackward {
  readonly shape: BackwardShape;
  /** Rows per scatter block and the number of blocks. */
  readonly rowsPerBlock: number;
  readonly nBlocks: number;
  /** Total entries (B·(K + Σ Ka)): the capacity of the sorted arrays. */
  readonly entries: number;
  #gpu: Gpu;
  #pipelines = new Map<string, GPUComputePipeline>();
  #scratch: Record<string, GPUBuffer> = {};
  /** With `textures`: U mirrored as a matrix texture of S·B rows, and its view. */
  #uTex?: MatrixTexture;
  #uTexView?: GPUTextureView;
  /** Per aux group: its dense path's scratch, where the shape asks for one. */
  #dense: (DenseAux | undefined)[] = [];
  /** Interleaving of the per-feature sums' grid (`BackwardShape.spread`). */
  #spread: number;

  private constructor(gpu: Gpu, shape: BackwardShape) {
    this.#gpu = gpu;
    this.shape = shape;
    this.#spread = shape.spread ?? dispatchSpread(gpu);
    const { B, n, k } = shape;
    const maxBlocks = Math.max(1, Math.floor(MAX_CURSOR_ENTRIES / n));
    const nBlocks = Math.max(1, Math.min(Math.ceil(B / MIN_ROWS_PER_BLOCK), maxBlocks));
    this.rowsPerBlock = Math.ceil(B / nBlocks);
    this.nBlocks = Math.ceil(B / this.rowsPerBlock);
    this.entries = B * (k + shape.aux.reduce((s, a) => s + a.k, 0));
  }

  /** Validate the shape, compile the kernels and allocate scratch. */
  static async create(gpu: Gpu, shape: BackwardShape): Promise<SparseBackward> {
    const { B, d, n, levelEnds } = shape;
    if (levelEnds.length < 1 || levelEnds[levelEnds.length - 1] !== n) {
      throw new GpuError(
        `sparse backward: levelEnds ${JSON.stringify(levelEnds)} must end at n = ${n}`,
      );
    }
    if (levelEnds.length + shape.aux.length > 255 || B >= 1 << 24) {
      throw new GpuError(`sparse backward: at most 255 gradient sources and 2^24 rows (B = ${B})`);
    }
    const S = levelEnds.length + shape.aux.length;
    const uBytes = S * B * d * 4;
    if (uBytes > gpu.device.limits.maxStorageBufferBindingSize) {
      throw new GpuError(
        `sparse backward: the upstream gradients (${S} × ${B} × ${d} f32 = ${uBytes} bytes) exceed the ` +
          `adapter's storage binding limit; use a smaller batch`,
      );
    }
    if (shape.spread !== undefined && !(Number.isInteger(shape.spread) && shape.spread >= 1)) {
      throw new GpuError(`sparse backward: spread ${shape.spread} must be a positive integer`);
    }
    const self = new SparseBackward(gpu, shape);
    self.#dense = shape.aux.map((g) =>
      g.dense
        ? createDenseAux(gpu, { B, d, n, base: g.dense.base, end: g.dense.end }, g.dense.gemm)
        : undefined
    );
    const spread = self.#spread;
    const kernels = [...ALL_KERNELS, ...[1, 4, 16].map((v) => reduceKernel(v, false, spread))];
    if (shape.textures) {
      if (!matrixTextureSupported(d)) {
        throw new GpuError(`sparse backward: matrix textures need d % 64 == 0 (d = ${d})`);
      }
      kernels.push(K_DPRE4_TEX, K_DPRE4X4_TEX, reduceKernel(16, true, spread), K_BPART_TEX);
      self.#uTex = createMatrixTexture(gpu, S * B, d, "backward U texture");
      self.#uTexView = matrixTextureView(self.#uTex);
    }
    // The GEMMs' entry points follow their widths (d for the gradients, dcap for the dpre).
    for (const x of self.#dense) {
      if (!x) continue;
      const gemms = [productOp(gpu, x, "dec"), productOp(gpu, x, "enc"), dpreProductOp(gpu, x)];
      kernels.push(...DENSE_AUX_KERNELS, ...gemms.map((op) => op.kernel));
    }
    for (const kern of kernels) self.#pipelines.set(kernelName(kern), await getPipeline(gpu, kern));
    const E = Math.max(1, self.entries);
    const s = self.#scratch;
    s.u = createStorage(gpu, uBytes, "backward U");
    s.dpre = createStorage(gpu, E * 4, "backward dpre");
    s.counts = createStorage(gpu, self.nBlocks * n * 4, "backward counts");
    s.start = createStorage(gpu, (n + 1) * 4, "backward start");
    s.key = createStorage(gpu, E * 4, "backward sorted key");
    s.sval = createStorage(gpu, E * 4, "backward sorted val");
    s.sdpre = createStorage(gpu, E * 4, "backward sorted dpre");
    s.sum = createStorage(gpu, n * 4, "backward dpre sums");
    s.partial = createStorage(gpu, Math.ceil(n / BDEC_CHUNK) * d * 4, "backward bDec partials");
    s.rowPartial = createStorage(gpu, Math.ceil(B / BDEC_ROWS) * d * 4, "backward bDec row sums");
    s.ends = uploadStorage(gpu, new Uint32Array(levelEnds), "backward level ends");
    return self;
  }

  #params(fields: Partial<Record<string, number>>): GPUBuffer {
    const { B, d, n, levelEnds } = this.shape;
    const all: Record<string, number> = {
      B,
      d,
      n,
      L: levelEnds.length,
      kseg: 0,
      src: SRC_FROM_LAYER,
      rows_per_block: this.rowsPerBlock,
      n_blocks: this.nBlocks,
      seg_base: 0,
      scal_idx: 0,
      level: 0,
      row_stride: 0,
      chunk: BDEC_CHUNK,
      n_chunks: Math.ceil(n / BDEC_CHUNK),
      alpha: 0,
      _pad: 0,
    };
    for (const [key, v] of Object.entries(fields)) all[key] = v!;
    return sharedUniforms(this.#gpu, all, ["alpha"]);
  }

  /** The steps of one backward pass, in order (counts must be zeroed before them). */
  dispatches(bufs: BackwardBuffers): BackwardStep[] {
    const { B, d, n, k, aux, levelEnds } = this.shape;
    const L = levelEnds.length;
    const s = this.#scratch;
    if (bufs.aux.length !== aux.length) {
      throw new GpuError(
        `sparse backward: ${bufs.aux.length} aux buffer sets for ${aux.length} aux groups`,
      );
    }
    if (this.shape.textures && !(bufs.decTex && bufs.xsTex && bufs.encTex)) {
      throw new GpuError(
        "sparse backward: the shape reads matrix textures; pass decTex, xsTex and encTex",
      );
    }
    const out: BackwardStep[] = [];
    // Per aux group with a dense path: the dispatches whose running the GPU decides (planOp).
    type Gated = { dispatch: Dispatch; dense: boolean; rowsPerY?: number; colsPerX?: number };
    const gated: Gated[][] = aux.map(() => []);
    const gate = (
      a: number,
      dispatch: Dispatch,
      dense: boolean,
      rowsPerY?: number,
      colsPerX?: number,
    ) => {
      if (this.#dense[a]) gated[a].push({ dispatch, dense, rowsPerY, colsPerX });
      return dispatch;
    };
    // Four elements per invocation where rows are whole vec4s.
    const vec4 = d % 4 === 0;
    const elemGrid = wrapGrid(this.#gpu, Math.ceil((B * d) / (vec4 ? 4 : 1) / WG));
    out.push({
      kernel: vec4 ? K_LEVEL4 : K_LEVEL,
      buffers: [
        bufs.recon,
        bufs.xs,
        bufs.scal,
        s.u,
        this.#params({ row_stride: elemGrid.stride * WG, scal_idx: this.shape.totalVarIndex }),
      ],
      workgroups: elemGrid.workgroups,
    });
    aux.forEach((g, a) => {
      out.push({
        kernel: vec4 ? K_AUX4 : K_AUX,
        buffers: [
          bufs.aux[a].ehat,
          bufs.xs,
          bufs.recon,
          bufs.scal,
          s.u,
          this.#params({
            row_stride: elemGrid.stride * WG,
            scal_idx: g.denomIndex,
            level: g.level,
            src: L + a,
            alpha: g.alpha,
          }),
        ],
        workgroups: elemGrid.workgroups,
      });
    });
    // U is complete: its texture mirror for the entry dot products and the per-feature sums.
    const uTex = this.#uTex;
    if (uTex) {
      out.push({
        command: (enc) => encodeMatrixTextureCopy(enc, s.u, uTex),
        label: "U texture copy",
      });
    }
    // Entry segments: main codes (source from the feature's layer; with one level, always source
    // 0, which lets entry_dpre4x4 serve them), then each aux group.
    const segments = [{ idx: bufs.idx, val: bufs.val, k, src: L === 1 ? 0 : SRC_FROM_LAYER }];
    aux.forEach((g, a) => {
      const ka = bufs.aux[a].k ?? g.k;
      if (!(Number.isInteger(ka) && ka >= 0 && ka <= g.k)) {
        throw new GpuError(
          `sparse backward: aux group ${a} has ${ka} slots per row; the plan holds 0..${g.k}`,
        );
      }
      segments.push({ idx: bufs.aux[a].idx, val: bufs.aux[a].val, k: ka, src: L + a });
    });
    let base = 0;
    const segBases: number[] = [];
    const segParams = segments.map((seg) => {
      segBases.push(base);
      const grid = wrapGrid(this.#gpu, Math.ceil((B * seg.k) / WG));
      const blocks = wrapGrid(this.#gpu, this.nBlocks);
      const quadGrid = wrapGrid(this.#gpu, Math.ceil((B * seg.k) / 4 / WG));
      const g8Grid = wrapGrid(this.#gpu, Math.ceil((B * seg.k) / (G8_WG / 8)));
      const p = {
        g8: this.#params({ kseg: seg.k, src: seg.src, seg_base: base, row_stride: g8Grid.stride }),
        g8Grid,
        quad: this.#params({
          kseg: seg.k,
          src: seg.src,
          seg_base: base,
          row_stride: quadGrid.stride * WG,
        }),
        quadGrid,
        flat: this.#params({
          kseg: seg.k,
          src: seg.src,
          seg_base: base,
          row_stride: grid.stride * WG,
        }),
        blocks: this.#params({
          kseg: seg.k,
          src: seg.src,
          seg_base: base,
          row_stride: blocks.stride,
        }),
        grid,
        blockGrid: blocks,
      };
      base += B * seg.k;
      return p;
    });
    const groups = d % 4 === 0 &&
      (this.shape.dpre ?? (this.#gpu.isFallback ? "lanes" : "groups")) === "groups";
    const tex = !!this.shape.textures;
    // The kernels with a texture variant declare the textures: placeholders where none is read.
    const unusedTex = placeholderTexture(this.#gpu, "sampled-array");
    const decT = bufs.decTex ?? unusedTex;
    const uT = this.#uTexView ?? unusedTex;
    segments.forEach((seg, i) => {
      const p = segParams[i];
      if (seg.k === 0) return;
      if (groups) {
        out.push(gate(i - 1, {
          kernel: K_DPRE_G8,
          buffers: [seg.idx, seg.val, s.u, bufs.decW, s.ends, s.dpre, p.g8],
          workgroups: p.g8Grid.workgroups,
        }, false));
      } else if (d % 4 === 0 && seg.k % 4 === 0 && seg.src !== SRC_FROM_LAYER) {
        // Fixed source, whole rows of four entries: one U load serves four dot products.
        out.push(gate(i - 1, {
          kernel: tex ? K_DPRE4X4_TEX : K_DPRE4X4,
          buffers: [seg.idx, seg.val, s.u, bufs.decW, s.ends, s.dpre, p.quad, decT, uT],
          workgroups: p.quadGrid.workgroups,
        }, false));
      } else {
        out.push(gate(i - 1, {
          kernel: d % 4 === 0 ? (tex ? K_DPRE4_TEX : K_DPRE4) : K_DPRE, // vec4 loads when rows allow
          buffers: [
            seg.idx,
            seg.val,
            s.u,
            bufs.decW,
            s.ends,
            s.dpre,
            p.flat,
            ...(d % 4 === 0 ? [decT, uT] : []),
          ],
          workgroups: p.grid.workgroups,
        }, false));
      }
      // An aux group's entries enter the per-feature sums only on its sparse path.
      out.push(gate(i - 1, {
        kernel: K_HIST,
        buffers: [seg.idx, seg.val, s.counts, p.flat],
        workgroups: p.grid.workgroups,
      }, false));
    });
    // Dense path: the AuxK entries by dead rank, U and xs transposed, the dpre row sums.
    aux.forEach((_, a) => {
      const x = this.#dense[a];
      const seg = segments[a + 1];
      if (!x || seg.k === 0) return;
      const list = this.#deadList(bufs, a);
      out.push({ command: (enc) => enc.clearBuffer(x.a), label: "dense AuxK clear" });
      out.push({ command: (enc) => enc.clearBuffer(x.p), label: "dense AuxK clear" });
      // The entries' dot products as one GEMM, G = U·W_dᵀ over the dead decoder rows.
      const rows = { list, decW: bufs.decW, ...(bufs.decTex ? { decTex: bufs.decTex } : {}) };
      out.push(gate(a, gatherRowsOp(this.#gpu, x, rows), true));
      out.push({
        command: (enc) => encodeDpreCopies(enc, x, s.u, (L + a) * B * d),
        label: "dense AuxK copies",
      });
      out.push(gate(a, dpreProductOp(this.#gpu, x), true, undefined, dpreColsPerX(this.#gpu, x)));
      out.push(gate(
        a,
        scatterDenseOp(this.#gpu, x, { idx: seg.idx, val: seg.val, dpre: x.g, list }, {
          ka: seg.k,
          segBase: segBases[a + 1],
          fromG: true,
        }),
        true,
      ));
      // From U's and xs's texture mirrors where the shape has them (U's is copied above).
      const [uTex, xsTex] = [this.#uTexView, bufs.xsTex];
      out.push(gate(a, transposeOp(this.#gpu, x, s.u, x.ut, (L + a) * B * d, uTex), true));
      out.push(gate(a, transposeOp(this.#gpu, x, bufs.xs, x.xt, 0, xsTex), true));
      out.push(gate(a, rowSumsOp(this.#gpu, x), true));
    });
    const featGrid = wrapGrid(this.#gpu, Math.ceil(n / WG));
    out.push({
      kernel: K_PREFIX,
      buffers: [s.counts, s.start, this.#params({ row_stride: featGrid.stride * WG })],
      workgroups: featGrid.workgroups,
    });
    out.push({
      kernel: groups ? K_SCAN_GPU : K_SCAN,
      buffers: [s.start, this.#params({})],
      workgroups: [1],
    });
    segments.forEach((seg, i) => {
      const p = segParams[i];
      if (seg.k === 0) return;
      out.push(gate(i - 1, {
        kernel: K_SCATTER,
        buffers: [
          seg.idx,
          seg.val,
          s.dpre,
          s.counts,
          s.start,
          s.key,
          s.sval,
          s.sdpre,
          s.ends,
          p.blocks,
        ],
        workgroups: p.blockGrid.workgroups,
      }, false));
    });
    const spread = this.#spread;
    const perFeature = wrapGrid(this.#gpu, spreadGroups(n, spread));
    // vec4 loads when rows allow; four vec4s per invocation when d % 16 == 0.
    const vec = d % 16 === 0 ? 16 : d % 4 === 0 ? 4 : 1;
    const colBlocks = Math.ceil(
      d / vec / (vec === 16 ? REDUCE16_WG : vec === 4 ? REDUCE4_WG : WG),
    );
    out.push({
      kernel: reduceKernel(vec, tex, spread),
      buffers: [
        s.start,
        s.key,
        s.sval,
        s.sdpre,
        s.u,
        bufs.xs,
        bufs.bDec,
        bufs.gradDec,
        bufs.gradEnc,
        s.sum,
        this.#params({ row_stride: perFeature.stride }),
        ...(vec === 16 ? [uT, bufs.xsTex ?? unusedTex] : []),
      ],
      workgroups: vec !== 1
        ? [...perFeature.workgroups, colBlocks]
        : [colBlocks, ...perFeature.workgroups],
    });
    // Dense path: the two gradient products, added into the sums of the main entries.
    aux.forEach((_, a) => {
      const x = this.#dense[a];
      if (!x || segments[a + 1].k === 0) return;
      const list = this.#deadList(bufs, a);
      out.push({ command: (enc) => encodeDenseCopies(enc, x, "dec"), label: "dense AuxK copies" });
      out.push(gate(a, productOp(this.#gpu, x, "dec"), true, productRowsPerY(this.#gpu, x)));
      out.push({ command: (enc) => encodeDenseCopies(enc, x, "enc"), label: "dense AuxK copies" });
      out.push(gate(a, productOp(this.#gpu, x, "enc"), true, productRowsPerY(this.#gpu, x)));
      out.push(gate(
        a,
        mergeOp(this.#gpu, x, {
          list,
          bDec: bufs.bDec,
          gradDec: bufs.gradDec,
          gradEnc: bufs.gradEnc,
          sum: s.sum,
        }),
        true,
      ));
    });
    const nChunks = Math.ceil(n / BDEC_CHUNK);
    out.push({
      kernel: tex ? K_BPART_TEX : K_BPART,
      buffers: [s.sum, bufs.encW, s.partial, this.#params({}), bufs.encTex ?? unusedTex],
      workgroups: [Math.ceil(d / (tex ? 4 : 1) / WG), nChunks],
    });
    out.push({
      kernel: K_BROWS,
      buffers: [s.u, s.rowPartial, this.#params({})],
      workgroups: [Math.ceil(d / WG), Math.ceil(B / BDEC_ROWS)],
    });
    out.push({
      kernel: K_BFINAL,
      buffers: [s.rowPartial, s.partial, bufs.gradB, this.#params({})],
      workgroups: [Math.ceil(d / WG)],
    });
    // Each dense path's plan runs first: it sets the workgroups of its gated dispatches.
    const plans = aux.flatMap((_, a) => {
      const x = this.#dense[a];
      return x && gated[a].length ? [planOp(this.#gpu, x, this.#deadList(bufs, a), gated[a])] : [];
    });
    return [...plans, ...out];
  }

  #deadList(bufs: BackwardBuffers, a: number): GPUBuffer {
    const list = bufs.aux[a].deadList;
    if (!list) {
      throw new GpuError(`sparse backward: aux group ${a} has a dense path but no dead list`);
    }
    return list;
  }

  /** Whether aux group `a` has a dense path (its plan buffer holds D and the choice). */
  denseAux(a: number): DenseAux | undefined {
    return this.#dense[a];
  }

  /**
   * Record the backward pass into `encoder` (its uniforms are shared by content). With `timer`,
   * each kernel is a phase of its own, named "sparse backward: <entry>". Returns the encoder that
   * holds the end of the pass (a wall-clock timer submits each phase and starts a new one).
   */
  encode(
    encoder: GPUCommandEncoder,
    bufs: BackwardBuffers,
    timer?: PhaseTimer,
  ): GPUCommandEncoder {
    const steps = this.dispatches(bufs);
    encoder.clearBuffer(this.#scratch.counts);
    // Runs of dispatches share one compute pass; commands (copies, clears) go between passes.
    let run: Dispatch[] = [];
    const flush = () => {
      if (!run.length) return;
      const pipelines = run.map((x) => this.#pipelines.get(kernelName(x.kernel))!);
      encodeDispatches(this.#gpu, encoder, run, pipelines);
      run = [];
    };
    for (const step of steps) {
      if ("command" in step) {
        flush();
        step.command(encoder);
        if (timer) encoder = timer.mark(encoder, `sparse backward: ${step.label}`);
      } else if (timer) {
        run.push(step);
        flush();
        encoder = timer.mark(encoder, `sparse backward: ${step.kernel.entry}`);
      } else run.push(step);
    }
    flush();
    return encoder;
  }

  /** Scratch buffers, for tests that inspect the transpose (sorted entries, segment starts). */
  get scratch(): Readonly<Record<string, GPUBuffer>> {
    return this.#scratch;
  }

  /** Free the scratch buffers. */
  destroy() {
    for (const b of Object.values(this.#scratch)) b.destroy();
    this.#uTex?.texture.destroy();
    for (const x of this.#dense) if (x) destroyDenseAux(x);
  }
}
