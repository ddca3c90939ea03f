/**
 * Deterministic loss reductions on the GPU (kernels/loss.wgsl): total variance, per-level squared
 * errors and the AuxK numerator/denominator, as sums the host (or a later kernel) divides.
 *
 * Shapes: B rows, d = d_in, L levels. xs [B, d], levels [L, B, d] (x̂s_{≤l}), ehat [B, d] (AuxK ê
 * of one aux layer), partials [T, d] and blocks [T, NB, d, 2] scratch (NB = ceil(B / 64) row
 * blocks), terms [T] output in this layout (T = `lossTermCount`):
 *   terms[0]            = totalVar = Σ_b Σ_j (xs − mean_b xs)²
 *   terms[1 + l]        = Σ_b Σ_j (x̂s_{≤l} − xs)²                       for l < L
 *   terms[1 + L + 2a]   = Σ (ê_a − r_a)², r_a = xs − x̂s_{≤level_a}      AuxK numerator of aux entry a
 *   terms[2 + L + 2a]   = Σ (r_a − mean_b r_a)²                          AuxK denominator
 * Main loss = Σ_l terms[1 + l] / terms[0]; auxTerm_a = terms[1 + L + 2a] / terms[2 + L + 2a].
 * On software adapters the inputs can be read through matrix-texture mirrors (`textures`), with
 * bitwise the same sums.
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { placeholderTexture } from "../../gpu/texture.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { ArborError } from "../../errors.ts";

/** Invocations per workgroup. */
const WG = 64;
/** Rows per block of the column sums (blocks merged in order by column_merge). */
const ROWS = 64;
const BLOCKS: Kernel = {
  file: "loss.wgsl",
  entry: "column_block_sums",
  constants: { WG, ROWS },
};
const BLOCKS4: Kernel = {
  file: "loss.wgsl",
  entry: "column_block_sums4",
  constants: { WG, ROWS },
};
const BLOCKS4_TEX: Kernel = {
  file: "loss.wgsl",
  entry: "column_block_sums4",
  constants: { WG, ROWS, LOSS_TEX: 1 },
};
const MERGE: Kernel = { file: "loss.wgsl", entry: "column_merge", constants: { WG, ROWS } };
const REDUCE: Kernel = { file: "loss.wgsl", entry: "reduce_terms", constants: { WG } };

/** Number of terms for L levels and `auxCount` AuxK entries: 1 + L + 2·auxCount. */
export function lossTermCount(L: number, auxCount: number): number {
  return 1 + L + 2 * auxCount;
}

/**
 * Most terms one block-sums dispatch takes (MAX_DISPATCH_TERMS in the WGSL). L + A ≤ 16 with L ≥ 1
 * keeps T = 1 + L + 2A ≤ 32, so the merge's centered flags fit the bits of one u32.
 */
const MAX_DISPATCH_TERMS = 16;

/** Floats of `lossTermsOp`'s block scratch for B rows of width d and T terms: [T, ceil(B / ROWS), d, 2]. */
export function lossBlocksLength(B: number, d: number, T: number): number {
  return 2 * T * Math.ceil(B / ROWS) * d;
}

/** One AuxK entry: its ê buffer and the level whose residual it reconstructs. */
export interface AuxTermInput {
  /** [B, d] AuxK reconstruction ê (no bias). */
  ehat: GPUBuffer;
  /** Level l of the residual r = xs − x̂s_{≤l} (topk/matryoshka: the last level). */
  level: number;
}

/** Buffers of `lossTermsOp`. */
export interface LossTermsBuffers {
  /** [B, d] standardised inputs. */
  xs: GPUBuffer;
  /** [L, B, d] level reconstructions from `sparseDecodeOp`. */
  levels: GPUBuffer;
  /** AuxK entries (may be empty). */
  aux: AuxTermInput[];
  /** [T, d] scratch, T = lossTermCount(L, aux.length). */
  partials: GPUBuffer;
  /** Block-sum scratch of lossBlocksLength(B, d, T) floats, a region per term. */
  blocks: GPUBuffer;
  /** [T] output sums. */
  terms: GPUBuffer;
  /**
   * The inputs' matrix-texture mirrors (lib/sae/ops/matrix_texture.ts; xs [B, d], levels [L·B, d],
   * one [B, d] per AuxK entry), read instead of the buffers (software adapters: a texel fetch
   * gathers across the SIMD lanes, a storage load loops over them). Needs d % 4 == 0.
   */
  textures?: LossTextures;
}

/** Texture views of `LossTermsBuffers`' inputs, in the same roles. */
export interface LossTextures {
  xs: GPUTextureView;
  levels: GPUTextureView;
  aux: GPUTextureView[];
}

/** A column-sum input: its buffer and, when read through textures, its texture view. */
type Input = [GPUBuffer, GPUTextureView | undefined];

/**
 * One term of a block-sums dispatch: e = a − bScale·bm + cScale·c, its three inputs read at element
 * offsets aOff, bOff, cOff (bm and c only where their scale is not 0); its sums go to term t.
 */
interface Term {
  t: number;
  aOff: number;
  bOff: number;
  cOff: number;
  centered: boolean;
  bScale: number;
  cScale: number;
}

/** The block-sums dispatch of `terms`, which all read the inputs a, bm, c. */
function blockSums(
  gpu: Gpu,
  inputs: [Input, Input, Input],
  terms: Term[],
  p: { B: number; d: number },
  blocks: GPUBuffer,
): Dispatch {
  const nb = Math.ceil(p.B / ROWS);
  const fields: Record<string, number> = { B: p.B, d: p.d, nb, pad0: 0 };
  const floats: string[] = [];
  for (let z = 0; z < MAX_DISPATCH_TERMS; z++) {
    const t = terms[z];
    Object.assign(fields, {
      [`aOff${z}`]: t?.aOff ?? 0,
      [`bOff${z}`]: t?.bOff ?? 0,
      [`cOff${z}`]: t?.cOff ?? 0,
      [`t${z}`]: t?.t ?? 0,
      [`bScale${z}`]: t?.bScale ?? 0,
      [`cScale${z}`]: t?.cScale ?? 0,
      [`centered${z}`]: t?.centered ? 1 : 0,
      [`unused${z}`]: 0,
    });
    floats.push(`bScale${z}`, `cScale${z}`);
  }
  const u = sharedUniforms(gpu, fields, floats);
  // Four columns per invocation when every view can be read as vec4.
  const by4 = p.d % 4 === 0 &&
    terms.every((t) => [t.aOff, t.bOff, t.cOff].every((o) => o % 4 === 0));
  const buffers: (GPUBuffer | GPUTextureView)[] = [...inputs.map(([buf]) => buf), blocks, u];
  const views = inputs.map(([, view]) => view);
  const tex = by4 && views.every((v) => v);
  if (by4) {
    // The vec4 entry declares the three textures: the inputs' own, or placeholders.
    const none = placeholderTexture(gpu, "sampled-array");
    buffers.push(...views.map((v) => (tex ? v! : none)));
  }
  // The inputs any term reads (READS): the others' reads compile away.
  const reads = terms.some((t) => t.cScale !== 0) ? 3 : terms.some((t) => t.bScale !== 0) ? 2 : 1;
  const kernel = tex ? BLOCKS4_TEX : by4 ? BLOCKS4 : BLOCKS;
  return {
    kernel: { ...kernel, constants: { ...kernel.constants, READS: reads } },
    buffers,
    workgroups: [Math.ceil(p.d / ((by4 ? 4 : 1) * WG)), nb, terms.length],
  };
}

/**
 * Dispatches computing every loss term sum (layout in the module doc) into `terms`: the block sums
 * of totalVar; of the level errors with the AuxK denominators (both read x̂s_l and xs); of each
 * AuxK numerator; then one merge and one reduction over all terms.
 */
export function lossTermsOp(
  gpu: Gpu,
  buffers: LossTermsBuffers,
  sizes: { B: number; d: number; L: number },
): Dispatch[] {
  const { B, d, L } = sizes;
  const A = buffers.aux.length;
  const T = lossTermCount(L, A);
  if (L + A > MAX_DISPATCH_TERMS) {
    throw new ArborError(
      `loss sums: ${L} levels and ${A} AuxK entries; at most ${MAX_DISPATCH_TERMS} of both ` +
        `together`,
    );
  }
  const { partials, blocks } = buffers;
  const tex = buffers.textures;
  const xs: Input = [buffers.xs, tex?.xs];
  const levels: Input = [buffers.levels, tex?.levels];
  const plain = { aOff: 0, bOff: 0, cOff: 0, centered: false, bScale: 1, cScale: 0 };
  const p = { B, d };
  const out: Dispatch[] = [];
  // Every term, for the merge's centered flags.
  const all: Term[] = [];
  const sums = (inputs: [Input, Input, Input], terms: Term[]) => {
    all.push(...terms);
    out.push(blockSums(gpu, inputs, terms, p, blocks));
  };
  // totalVar: xs about its batch mean.
  sums([xs, xs, xs], [{ ...plain, t: 0, centered: true, bScale: 0 }]);
  // x̂s_l − xs per level; each AuxK denominator as x̂s_l − xs about its batch mean (= r with its
  // sign flipped: the same squares, bitwise). Alternated, so that each contiguous share of the
  // grid (a software adapter's thread) gets as many of the centered terms, which read twice.
  const levelTerms: Term[] = [];
  for (let i = 0; i < Math.max(L, A); i++) {
    if (i < L) levelTerms.push({ ...plain, t: 1 + i, aOff: i * B * d });
    if (i < A) {
      const aOff = buffers.aux[i].level * B * d;
      levelTerms.push({ ...plain, t: 2 + L + 2 * i, aOff, centered: true });
    }
  }
  sums([levels, xs, xs], levelTerms);
  // Each AuxK numerator: ê − (xs − x̂s_l).
  buffers.aux.forEach(({ ehat, level }, i) => {
    const e: Input = [ehat, tex?.aux[i]];
    const numerator = { ...plain, t: 1 + L + 2 * i, cOff: level * B * d, cScale: 1 };
    sums([e, xs, levels], [numerator]);
  });
  // Centered: totalVar and every AuxK denominator.
  const centered = all.reduce((m, t) => t.centered ? m | (1 << t.t) : m, 0);
  const um = sharedUniforms(gpu, { B, d, nb: Math.ceil(B / ROWS), centered: centered >>> 0 });
  out.push({ kernel: MERGE, buffers: [blocks, partials, um], workgroups: [Math.ceil(d / WG), T] });
  const u = sharedUniforms(gpu, { d, T, pad0: 0, pad1: 0 });
  out.push({ kernel: REDUCE, buffers: [partials, buffers.terms, u], workgroups: [T] });
  return out;
}
