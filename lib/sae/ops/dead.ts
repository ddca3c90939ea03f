/**
 * Dead-feature tracking on the GPU (kernels/dead.wgsl): per-feature fire counts of a batch
 * (val > FIRE_THRESHOLD in the main codes) and the tokens-since-fired counters.
 *
 * Shapes: idx u32 / val f32 [B, K] codes; counts, active u32 [n] (zero them before `fireCountOp`);
 * since u32 [n] tokens since each feature last fired (saturates at 2^32 − 1).
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { wrapGrid } from "./grid.ts";

const WG = 64;
const FIRE: Kernel = { file: "dead.wgsl", entry: "fire_count", constants: { WG } };
const UPDATE: Kernel = { file: "dead.wgsl", entry: "dead_update", constants: { WG } };
const MASK: Kernel = { file: "dead.wgsl", entry: "dead_mask", constants: { WG } };
/** Largest tokens-since-fired value (the counters saturate there). */
const SINCE_MAX = 0xffffffff;

/**
 * Dispatches adding each firing slot (val > 1e-3) of the codes [B, K] to counts [n] and each
 * active slot (val > 0) to active [n]; both zeroed beforehand.
 */
export function fireCountOp(
  gpu: Gpu,
  bufs: { idx: GPUBuffer; val: GPUBuffer; counts: GPUBuffer; active: GPUBuffer },
  sizes: { B: number; K: number },
): Dispatch[] {
  const len = sizes.B * sizes.K;
  const grid = wrapGrid(gpu, Math.ceil(len / WG));
  const u = sharedUniforms(gpu, { len, tokens: sizes.B, row_stride: grid.stride * WG, _p: 0 });
  return [{
    kernel: FIRE,
    buffers: [bufs.idx, bufs.val, bufs.counts, bufs.active, u],
    workgroups: grid.workgroups,
  }];
}

/** Dispatches of since[f] = counts[f] > 0 ? 0 : since[f] + tokens, for n features. */
export function deadUpdateOp(
  gpu: Gpu,
  bufs: { counts: GPUBuffer; since: GPUBuffer },
  sizes: { n: number; tokens: number },
): Dispatch[] {
  const grid = wrapGrid(gpu, Math.ceil(sizes.n / WG));
  const u = sharedUniforms(gpu, {
    len: sizes.n,
    tokens: sizes.tokens,
    row_stride: grid.stride * WG,
    _p: 0,
  });
  return [{ kernel: UPDATE, buffers: [bufs.counts, bufs.since, u], workgroups: grid.workgroups }];
}

/**
 * Dispatches of dead[f] = since[f] ≥ deadTokens ? 1 : 0 for n features (a threshold above the
 * counters' saturation value marks nothing dead, as on the host).
 */
export function deadMaskOp(
  gpu: Gpu,
  bufs: { since: GPUBuffer; dead: GPUBuffer },
  sizes: { n: number; deadTokens: number },
): Dispatch[] {
  const grid = wrapGrid(gpu, Math.ceil(sizes.n / WG));
  const u = sharedUniforms(gpu, {
    len: sizes.n,
    tokens: Math.min(sizes.deadTokens, SINCE_MAX),
    row_stride: grid.stride * WG,
    _p: sizes.deadTokens > SINCE_MAX ? 1 : 0,
  });
  return [{ kernel: MASK, buffers: [bufs.since, bufs.dead, u], workgroups: grid.workgroups }];
}
