/**
 * AuxK's backward over the dead features as dense products (kernels/aux_dense.wgsl), used by the
 * sparse backward when few features are dead. With D dead features the AuxK entries' dot products
 * (B·Ka of them, 1 M at B = 4096) are one GEMM G = U·W_dᵀ over the dead decoder rows, and the
 * entries, scattered into [Dcap, B] matrices by dead rank, give the two gradients as GEMMs of
 * 2·D·B·d FLOPs each (bench/README.md, "Built: …"). Which path runs is decided on the GPU from the
 * dead count (`planOp`), never from the host's estimate, so the weights stay reproducible.
 *
 * The GEMMs are texture GEMMs on software adapters (operands copied into GEMM textures) and the
 * storage-buffer encoder GEMM elsewhere (`denseAuxGemm`); on GPUs the dense path runs only when
 * asked for (`GpuEngineOptions.denseAux`): on an H200 it was slower than the sparse path at 5 %
 * dead (n = 24 576: 349 k against 381 k tokens/s; bench/README.md, twelfth session).
 *
 * Shapes: B rows, d = d_in, n features, group [base, end), Dcap = capacity in dead features.
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { createStorage } from "../../gpu/buffer.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { ArborError } from "../../errors.ts";
import { wrapGrid } from "./grid.ts";
import {
  createGemmTextures,
  defaultGemmVariant,
  encodeGemmTextureCopies,
  encoderGemmOp,
  type GemmTextures,
  gemmWorkgroupTile,
  textureGemmBlock,
  textureGemmOp,
  textureGemmTile,
} from "./encoder_gemm.ts";

const WG = 64;
/** Gated dispatches one plan can steer (MAX_ARGS in the WGSL). */
export const MAX_GATED = 64;
/**
 * Most dead features the dense path takes (a multiple of 64). Its products cost ∝ Dcap·B·d while
 * the sparse sums cost ∝ B·Ka·d whatever the dead count; 1 536 keeps the dense path's ~1 s at most
 * (bench/README.md, dense_aux_probe.ts: 2 × 219 ms at 1 280) under the sparse path's.
 */
export const DENSE_AUX_MAX = 1536;

function kernel(entry: string): Kernel {
  return { file: "aux_dense.wgsl", entry, constants: { WG } };
}
const K_PLAN: Kernel = { file: "aux_dense.wgsl", entry: "plan", constants: {} };
const K_SCATTER = kernel("scatter_dense");
const K_TRANSPOSE = kernel("transpose");
const K_TRANSPOSE_TEX4 = kernel("transpose_tex4");
const K_ROWS = kernel("row_sums");
const K_MERGE = kernel("merge");
const K_MERGE4 = kernel("merge4");
const K_GATHER = kernel("gather_rows");
const K_GATHER_TEX4 = kernel("gather_rows_tex4");
const K_SCATTER_CODES = kernel("scatter_codes");
const K_GATHER_COLS = kernel("gather_cols");
/** Every kernel of this module (for pipeline warm-up). */
export const DENSE_AUX_KERNELS = [
  K_PLAN,
  K_SCATTER,
  K_TRANSPOSE,
  K_TRANSPOSE_TEX4,
  K_ROWS,
  K_MERGE,
  K_MERGE4,
  K_GATHER,
  K_GATHER_TEX4,
  K_SCATTER_CODES,
  K_GATHER_COLS,
];
/** `path` values of the plan's grids from which x is cut to the dead count (COLS_CUT in the WGSL). */
const COLS_CUT = 65536;

/** How the dense path's products run: texture GEMMs (software adapters) or storage-buffer GEMMs. */
export type DenseAuxGemm = "texture" | "storage";

/**
 * The dense path's GEMMs on an adapter for batches of B rows of width d, or undefined where the
 * sparse path alone runs. By default (`want` undefined): texture GEMMs on software adapters where
 * B and d are multiples of 64 (texture copies need 256-byte rows), nothing elsewhere. `want` true
 * takes the dense path wherever it can (storage GEMMs where textures do not fit); false, nowhere.
 */
export function denseAuxGemm(
  gpu: Gpu,
  B: number,
  d: number,
  want?: boolean,
): DenseAuxGemm | undefined {
  if (want === false) return undefined;
  if (gpu.isFallback && B % 64 === 0 && d % 64 === 0) return "texture";
  return want ? "storage" : undefined;
}

/** Capacity in dead features for a group of `size` features (0: too small to be worth it). */
export function denseAuxCapacity(size: number): number {
  return Math.min(DENSE_AUX_MAX, Math.ceil(size / 64) * 64);
}

/** Scratch of one AuxK group's dense path. */
export interface DenseAux {
  B: number;
  d: number;
  n: number;
  base: number;
  end: number;
  dcap: number;
  /** How the products run; the GEMM textures exist only for "texture". */
  gemm: DenseAuxGemm;
  /** u32 [3·MAX_GATED + 2]: indirect arguments, then D and the dense flag (STORAGE | INDIRECT). */
  args: GPUBuffer;
  /** [dcap, B] AuxK values and dpre by dead rank. */
  a: GPUBuffer;
  p: GPUBuffer;
  /** [d, B] the AuxK residual gradient and xs, transposed. */
  ut: GPUBuffer;
  xt: GPUBuffer;
  /** [dcap] row sums of p. */
  s: GPUBuffer;
  /** [dcap, d] the two gradient products. */
  gd: GPUBuffer;
  ge: GPUBuffer;
  /** [max(B, d, dcap)] zeros: the GEMMs' subtracted bias. */
  zero: GPUBuffer;
  /** [dcap, d] the dead decoder rows; [B, d] the AuxK residual gradient; [B, dcap] G = U·W_dᵀ. */
  wd: GPUBuffer;
  uaux: GPUBuffer;
  g: GPUBuffer;
  /** The forward's AuxK decode: its plan's arguments, A_f [B, dcap] and W_dᵀ [d, dcap]. */
  argsF: GPUBuffer;
  af: GPUBuffer;
  wdt: GPUBuffer;
  /** Texture GEMMs: the operands of ∇W_dec, ∇W_enc, G and the decode, copied in before each. */
  tex?: { a: GemmTextures; p: GemmTextures; g: GemmTextures; f: GemmTextures };
}

/** Allocate the dense path of a group [base, end) of n features for batches of B rows. */
export function createDenseAux(
  gpu: Gpu,
  sizes: { B: number; d: number; n: number; base: number; end: number },
  gemm: DenseAuxGemm = "texture",
): DenseAux {
  const { B, d, n, base, end } = sizes;
  const fits = gemm === "storage" || (B % 64 === 0 && d % 64 === 0);
  if (!(0 <= base && base < end && end <= n) || !fits) {
    throw new ArborError(
      `dense AuxK: group [${base}, ${end}) of ${n}, B = ${B}, d = ${d}; ` +
        `texture GEMMs need B, d multiples of 64`,
    );
  }
  const dcap = denseAuxCapacity(end - base);
  const f32 = (len: number, label: string) => createStorage(gpu, len * 4, `dense AuxK ${label}`);
  const args = (label: string) =>
    gpu.device.createBuffer({
      size: (3 * MAX_GATED + 2) * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.INDIRECT | GPUBufferUsage.COPY_SRC,
      label,
    });
  const tex = gemm === "texture"
    ? {
      a: createGemmTextures(gpu, { B: dcap, d: B, n: d }),
      p: createGemmTextures(gpu, { B: dcap, d: B, n: d }),
      g: createGemmTextures(gpu, { B, d, n: dcap }),
      f: createGemmTextures(gpu, { B, d: dcap, n: d }),
    }
    : undefined;
  return {
    ...sizes,
    dcap,
    gemm,
    args: args("dense AuxK args"),
    a: f32(dcap * B, "A"),
    p: f32(dcap * B, "P"),
    ut: f32(d * B, "Uᵀ"),
    xt: f32(d * B, "xsᵀ"),
    s: f32(dcap, "row sums"),
    gd: f32(dcap * d, "∇W_dec rows"),
    ge: f32(dcap * d, "∇W_enc rows"),
    zero: f32(Math.max(B, d, dcap), "zero bias"),
    wd: f32(dcap * d, "W_d"),
    uaux: f32(B * d, "U"),
    g: f32(B * dcap, "G"),
    argsF: args("dense AuxK decode args"),
    af: f32(B * dcap, "A_f"),
    wdt: f32(d * dcap, "W_dᵀ"),
    ...(tex ? { tex } : {}),
  };
}

/** Free the scratch of a dense path. */
export function destroyDenseAux(x: DenseAux) {
  for (const b of [x.args, x.a, x.p, x.ut, x.xt, x.s, x.gd, x.ge, x.zero, x.wd, x.uaux, x.g]) {
    b.destroy();
  }
  for (const b of [x.argsF, x.af, x.wdt]) b.destroy();
  for (const t of x.tex ? Object.values(x.tex) : []) {
    t.xs.texture.destroy();
    t.encW.texture.destroy();
  }
}

function params(gpu: Gpu, x: DenseAux, fields: Partial<Record<string, number>>): GPUBuffer {
  return sharedUniforms(gpu, {
    B: x.B,
    d: x.d,
    n: x.n,
    ka: 0,
    base: x.base,
    end: x.end,
    dcap: x.dcap,
    segBase: 0,
    srcOff: 0,
    rowStride: 0,
    fromG: 0,
    pad1: 0,
    ...fields,
  });
}

/** An element-wise entry over `count` invocations (1-D, wrapped past rowStride), Params last. */
function elementwise(
  gpu: Gpu,
  x: DenseAux,
  kernel: Kernel,
  count: number,
  buffers: (GPUBuffer | GPUTextureView)[],
  fields: Partial<Record<string, number>> = {},
): Dispatch {
  const grid = wrapGrid(gpu, Math.ceil(count / WG));
  return {
    kernel,
    buffers: [...buffers, params(gpu, x, { ...fields, rowStride: grid.stride * WG })],
    workgroups: grid.workgroups,
  };
}

/** The products: out [rows, N] = X [rows, K] · Wᵀ (W [N, K]); the textures' names in `x.tex`. */
const PRODUCTS = {
  dec: (x: DenseAux) => ({ X: x.a, W: x.ut, K: x.B, N: x.d, rows: x.dcap, tex: x.tex?.a }),
  enc: (x: DenseAux) => ({ X: x.p, W: x.xt, K: x.B, N: x.d, rows: x.dcap, tex: x.tex?.p }),
  dpre: (x: DenseAux) => ({ X: x.uaux, W: x.wd, K: x.d, N: x.dcap, rows: x.B, tex: x.tex?.g }),
  decode: (x: DenseAux) => ({ X: x.af, W: x.wdt, K: x.dcap, N: x.d, rows: x.B, tex: x.tex?.f }),
};
type Product = keyof typeof PRODUCTS;

/**
 * The one GEMM dispatch of a product (zero bias): a texture GEMM reading its operands' copies, or
 * the storage encoder GEMM reading the buffers. `kLimit` (texture GEMMs) stops the sum at the
 * count it reads; the storage GEMM sums all K, exact where both operands are zero past it.
 */
function gemmOp(
  gpu: Gpu,
  x: DenseAux,
  which: Product,
  out: GPUBuffer,
  kLimit?: { buffer: GPUBuffer; at: number },
): Dispatch {
  const { X, W, K, N, rows, tex } = PRODUCTS[which](x);
  const ops = tex
    ? textureGemmOp(gpu, tex, { bDec: x.zero, pre: out, kLimit }, { rows, rowOffset: 0 })
    : encoderGemmOp(gpu, { xs: X, encW: W, bDec: x.zero, pre: out }, {
      d: K,
      n: N,
      rows,
      rowOffset: 0,
    });
  if (ops.length !== 1) throw new ArborError(`dense AuxK: ${ops.length} GEMM dispatches`);
  return ops[0];
}

/** Output rows (y) and columns (x) per workgroup of a product's GEMM, for `planOp`'s cuts. */
function gemmTile(gpu: Gpu, x: DenseAux, which: Product): { rows: number; cols: number } {
  const { K, N } = PRODUCTS[which](x);
  return x.tex
    ? textureGemmTile(textureGemmBlock(gpu, N))
    : gemmWorkgroupTile(defaultGemmVariant(gpu, K));
}

/** Record the copies of a product's operands into its GEMM textures (none for storage GEMMs). */
function encodeProductCopies(enc: GPUCommandEncoder, x: DenseAux, which: Product) {
  const { X, W, tex } = PRODUCTS[which](x);
  // The texture GEMM's layout: "xs" [rows, K] and "encW" [N, K].
  if (tex) encodeGemmTextureCopies(enc, tex, { xs: X, encW: W });
}

/**
 * The plan dispatch: it points every gated dispatch at its slot of `x.args` (`indirect`), and on
 * the GPU gives each its grid when its path is taken (dense: 0 < D ≤ dcap), else zero workgroups.
 * `rowsPerY` (dense GEMMs over the dead rows): y is cut to ⌈D / rowsPerY⌉, so their cost follows D;
 * `colsPerX` (over the dead columns): x is cut to ⌈D / colsPerX⌉.
 */
export function planOp(
  gpu: Gpu,
  x: DenseAux,
  list: GPUBuffer,
  gated: { dispatch: Dispatch; dense: boolean; rowsPerY?: number; colsPerX?: number }[],
  args: GPUBuffer = x.args,
): Dispatch {
  if (gated.length > MAX_GATED) {
    throw new ArborError(`dense AuxK: ${gated.length} gated dispatches; at most ${MAX_GATED}`);
  }
  const fields: Record<string, number> = {
    base: x.base,
    end: x.end,
    n: x.n,
    dcap: x.dcap,
    count: gated.length,
    pad0: 0,
    pad1: 0,
    pad2: 0,
  };
  for (let i = 0; i < MAX_GATED; i++) {
    const g = gated[i];
    const [gx, gy = 1, gz = 1] = g?.dispatch.workgroups ?? [0];
    fields[`g${i}x`] = gx;
    fields[`g${i}y`] = gy;
    fields[`g${i}z`] = gz;
    fields[`g${i}w`] = !g?.dense
      ? 0
      : g.colsPerX
      ? COLS_CUT + g.colsPerX
      : g.rowsPerY && g.rowsPerY >= 2
      ? g.rowsPerY
      : 1;
    if (g) g.dispatch.indirect = { buffer: args, offset: 12 * i };
  }
  return { kernel: K_PLAN, buffers: [list, args, sharedUniforms(gpu, fields)], workgroups: [1] };
}

/**
 * Scatter a segment's AuxK slots (idx/val [B, ka]) into x.a and x.p by rank; x.p takes dpre at
 * segBase, or with `fromG` the entries' dot products from G [B, dcap] (pass it as `dpre`).
 */
export function scatterDenseOp(
  gpu: Gpu,
  x: DenseAux,
  bufs: { idx: GPUBuffer; val: GPUBuffer; dpre: GPUBuffer; list: GPUBuffer },
  sizes: { ka: number; segBase: number; fromG?: boolean },
): Dispatch {
  return elementwise(
    gpu,
    x,
    K_SCATTER,
    x.B * sizes.ka,
    [bufs.list, bufs.idx, bufs.val, bufs.dpre, x.a, x.p],
    { ka: sizes.ka, segBase: sizes.segBase, fromG: sizes.fromG ? 1 : 0 },
  );
}

/**
 * out [d, B] = the [B, d] matrix starting at element srcOff of `src`, transposed; with `tex`, read
 * from the same rows of `src`'s matrix-texture mirror (from row srcOff / d) where B % 4 == 0
 * (software adapters: texel fetches instead of strided storage loads).
 */
export function transposeOp(
  gpu: Gpu,
  x: DenseAux,
  src: GPUBuffer,
  out: GPUBuffer,
  srcOff: number,
  tex?: GPUTextureView,
): Dispatch {
  if (tex && x.B % 4 === 0) {
    const srcRow = srcOff / x.d;
    return elementwise(gpu, x, K_TRANSPOSE_TEX4, (x.B / 4) * x.d, [tex, out], { srcOff: srcRow });
  }
  return elementwise(gpu, x, K_TRANSPOSE, x.B * x.d, [src, out], { srcOff });
}

/** x.s = the row sums of x.p. */
export function rowSumsOp(gpu: Gpu, x: DenseAux): Dispatch {
  return {
    kernel: K_ROWS,
    buffers: [x.p, x.s, params(gpu, x, {})],
    workgroups: [Math.ceil(x.dcap / WG)],
  };
}

/** Output rows per workgroup row of `productOp`'s GEMM (its `rowsPerY` for `planOp`). */
export function productRowsPerY(gpu: Gpu, x: DenseAux): number {
  return gemmTile(gpu, x, "dec").rows;
}

/** The GEMM x.gd = x.a · x.utᵀ (x.ge = x.p · x.xtᵀ), after `encodeDenseCopies` of its operands. */
export function productOp(gpu: Gpu, x: DenseAux, which: "dec" | "enc"): Dispatch {
  return gemmOp(gpu, x, which, which === "dec" ? x.gd : x.ge);
}

/** Record the copies of a product's operands into its textures (A and Uᵀ, or P and xsᵀ). */
export function encodeDenseCopies(enc: GPUCommandEncoder, x: DenseAux, which: "dec" | "enc") {
  encodeProductCopies(enc, x, which);
}

/**
 * x.wd = the decoder rows of the group's dead features by rank, zero past D; with `decTex` (decW's
 * matrix-texture mirror, software adapters), read from it four columns at a time where d % 4 == 0.
 */
export function gatherRowsOp(
  gpu: Gpu,
  x: DenseAux,
  bufs: { list: GPUBuffer; decW: GPUBuffer; decTex?: GPUTextureView },
): Dispatch {
  if (bufs.decTex && x.d % 4 === 0) {
    return elementwise(gpu, x, K_GATHER_TEX4, (x.dcap * x.d) / 4, [bufs.list, bufs.decTex, x.wd]);
  }
  return elementwise(gpu, x, K_GATHER, x.dcap * x.d, [bufs.list, bufs.decW, x.wd]);
}

/** The GEMM x.g = U·x.wdᵀ [B, dcap] (the AuxK entries' dot products), after `encodeDpreCopies`. */
export function dpreProductOp(gpu: Gpu, x: DenseAux): Dispatch {
  return gemmOp(gpu, x, "dpre", x.g);
}

/** Columns of G per workgroup column of `dpreProductOp` (its `colsPerX` for `planOp`). */
export function dpreColsPerX(gpu: Gpu, x: DenseAux): number {
  return gemmTile(gpu, x, "dpre").cols;
}

/** Copy U (the [B, d] matrix at element srcOff of `u`) into x.uaux, and x.wd with it into x.tex.g. */
export function encodeDpreCopies(
  enc: GPUCommandEncoder,
  x: DenseAux,
  u: GPUBuffer,
  srcOff: number,
) {
  enc.copyBufferToBuffer(u, srcOff * 4, x.uaux, 0, x.B * x.d * 4);
  encodeProductCopies(enc, x, "dpre");
}

/** Add the dense rows into the sparse gradients (after the sparse reduction). */
export function mergeOp(
  gpu: Gpu,
  x: DenseAux,
  bufs: {
    list: GPUBuffer;
    bDec: GPUBuffer;
    gradDec: GPUBuffer;
    gradEnc: GPUBuffer;
    sum: GPUBuffer;
  },
): Dispatch {
  // Four columns per invocation where rows are whole vec4s.
  const vec4 = x.d % 4 === 0;
  return elementwise(gpu, x, vec4 ? K_MERGE4 : K_MERGE, (x.dcap * x.d) / (vec4 ? 4 : 1), [
    bufs.list,
    x.gd,
    x.ge,
    x.s,
    bufs.bDec,
    bufs.gradDec,
    bufs.gradEnc,
    bufs.sum,
  ]);
}

/** x.af = a segment's AuxK slots (idx/val [B, ka]) by dead rank, [B, dcap]; x.af must be zero. */
export function scatterCodesOp(
  gpu: Gpu,
  x: DenseAux,
  bufs: { idx: GPUBuffer; val: GPUBuffer; list: GPUBuffer },
  sizes: { ka: number },
): Dispatch {
  return elementwise(
    gpu,
    x,
    K_SCATTER_CODES,
    x.B * sizes.ka,
    [bufs.list, bufs.idx, bufs.val, x.af],
    {
      ka: sizes.ka,
    },
  );
}

/** x.wdt = the decoder rows of the group's dead features by rank, transposed [d, dcap]. */
export function gatherColsOp(
  gpu: Gpu,
  x: DenseAux,
  bufs: { list: GPUBuffer; decW: GPUBuffer },
): Dispatch {
  return elementwise(gpu, x, K_GATHER_COLS, x.dcap * x.d, [bufs.list, bufs.decW, x.wdt]);
}

/** Record the copies of x.af and x.wdt into x.tex.f (after `scatterCodesOp`, `gatherColsOp`). */
export function encodeDecodeCopies(enc: GPUCommandEncoder, x: DenseAux) {
  encodeProductCopies(enc, x, "decode");
}

/**
 * The AuxK decode as one GEMM: out [B, d] = x.af · W_d, after `encodeDecodeCopies`; a texture GEMM
 * sums over the D dead columns the forward plan wrote into x.argsF, a storage GEMM over all dcap
 * (A_f and W_dᵀ are zero past D).
 */
export function decodeProductOp(gpu: Gpu, x: DenseAux, out: GPUBuffer): Dispatch {
  return gemmOp(gpu, x, "decode", out, { buffer: x.argsF, at: 3 * MAX_GATED });
}
