/**
 * Deterministic loss reductions on the GPU (kernels/loss.wgsl): total variance, per-level squared
 * errors and the AuxK numerator/denominator, as sums the host (or a later kernel) divides.
 *
 * Shapes: B rows, d = d_in, L levels. xs [B, d], levels [L, B, d] (x̂s_{≤l}), ehat [B, d] (AuxK ê
 * of one aux layer), partials [T, d] and blocks [NB, d, 2] scratch (NB = ceil(B / 64) row blocks),
 * terms [T] output with the layout of `lossTermLayout`:
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

/** Floats of `lossTermsOp`'s block scratch for B rows of width d: [ceil(B / ROWS), d, 2]. */
export function lossBlocksLength(B: number, d: number): number {
  return 2 * Math.ceil(B / ROWS) * d;
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
  /** Block-sum scratch of lossBlocksLength(B, d) floats (reused by every term in turn). */
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

function columnSums(
  gpu: Gpu,
  inputs: [Input, Input, Input],
  p: {
    B: number;
    d: number;
    aOff: number;
    bOff: number;
    cOff: number;
    outRow: number;
    centered: boolean;
    bScale: number;
    cScale: number;
  },
  { blocks, out }: { blocks: GPUBuffer; out: GPUBuffer },
): Dispatch[] {
  const u = sharedUniforms(gpu, {
    B: p.B,
    d: p.d,
    aOff: p.aOff,
    bOff: p.bOff,
    cOff: p.cOff,
    outRow: p.outRow,
    centered: p.centered ? 1 : 0,
    pad0: 0,
    bScale: p.bScale,
    cScale: p.cScale,
    pad1: 0,
    pad2: 0,
  }, ["bScale", "cScale", "pad1", "pad2"]);
  const groups = Math.ceil(p.d / WG);
  // Four columns per invocation when every view can be read as vec4.
  const by4 = p.d % 4 === 0 && [p.aOff, p.bOff, p.cOff].every((o) => o % 4 === 0);
  const buffers: (GPUBuffer | GPUTextureView)[] = [...inputs.map(([buf]) => buf), blocks, u];
  const views = inputs.map(([, view]) => view);
  const tex = by4 && views.every((v) => v);
  if (by4) {
    // The vec4 entry declares the three textures: the inputs' own, or placeholders.
    const none = placeholderTexture(gpu, "sampled-array");
    buffers.push(...views.map((v) => (tex ? v! : none)));
  }
  const blockSums: Dispatch = {
    kernel: tex ? BLOCKS4_TEX : by4 ? BLOCKS4 : BLOCKS,
    buffers,
    workgroups: [by4 ? Math.ceil(p.d / (4 * WG)) : groups, Math.ceil(p.B / ROWS)],
  };
  return [
    blockSums,
    { kernel: MERGE, buffers: [blocks, out, u], workgroups: [groups] },
  ];
}

/** Dispatches computing every loss term sum (layout in the module doc) into `terms`. */
export function lossTermsOp(
  gpu: Gpu,
  buffers: LossTermsBuffers,
  sizes: { B: number; d: number; L: number },
): Dispatch[] {
  const { B, d, L } = sizes;
  const { partials, blocks } = buffers;
  const tex = buffers.textures;
  const xs: Input = [buffers.xs, tex?.xs];
  const levels: Input = [buffers.levels, tex?.levels];
  const to = { blocks, out: partials };
  const base = { B, d, aOff: 0, bOff: 0, cOff: 0, centered: false, bScale: 1, cScale: 0 };
  const out: Dispatch[] = [
    ...columnSums(gpu, [xs, xs, xs], { ...base, outRow: 0, centered: true, bScale: 0 }, to),
  ];
  for (let l = 0; l < L; l++) {
    out.push(
      ...columnSums(gpu, [levels, xs, xs], { ...base, aOff: l * B * d, outRow: 1 + l }, to),
    );
  }
  buffers.aux.forEach(({ ehat, level }, i) => {
    const lOff = level * B * d;
    const e: Input = [ehat, tex?.aux[i]];
    out.push(
      ...columnSums(
        gpu,
        [e, xs, levels],
        { ...base, cOff: lOff, cScale: 1, outRow: 1 + L + 2 * i },
        to,
      ),
      ...columnSums(
        gpu,
        [xs, levels, xs],
        { ...base, bOff: lOff, centered: true, outRow: 2 + L + 2 * i },
        to,
      ),
    );
  });
  const T = lossTermCount(L, buffers.aux.length);
  const u = sharedUniforms(gpu, { d, T, pad0: 0, pad1: 0 });
  out.push({ kernel: REDUCE, buffers: [partials, buffers.terms, u], workgroups: [T] });
  return out;
}
