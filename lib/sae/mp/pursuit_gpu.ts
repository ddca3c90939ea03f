/**
 * Matching pursuit on the GPU (kernels/mp.wgsl): upload the start state (`mpInit`), run
 * `mp_step` k times in one submit (one pass each), read the pursuit state back. The result
 * equals `mpPursuit` of lib/sae/mp/reference.ts (same picks; values to f32 rounding).
 * Work: k iterations × B rows × n atoms × d — the same scoring GEMM per step as the ref's
 * `residual @ decoder.weight`, fused with the argmax so no [B, n] score matrix exists.
 */
import type { Gpu } from "../../gpu/device.ts";
import { readF32, readU32, uniforms, uploadStorage } from "../../gpu/buffer.ts";
import { type Dispatch, type Kernel, runKernels } from "../../gpu/kernel.ts";
import { releaseUniforms, wrapGrid } from "../ops/grid.ts";
import { mpInit, type MpState } from "./reference.ts";

/** Invocations per workgroup (a power of two: the kernel reduces by halving). */
const WG = 64;
/** The pursuit kernel. */
export const MP_STEP: Kernel = { file: "mp.wgsl", entry: "mp_step", constants: { WG } };

/**
 * Run the pursuit of xs [B, d] against the atoms in `decW` (a storage buffer [n, d] on
 * `gpu`) for up to k iterations with residual threshold `eps`.
 */
export async function mpPursuitGpu(
  gpu: Gpu,
  decW: GPUBuffer,
  xs: Float32Array,
  shape: { B: number; d: number; n: number; k: number },
  eps: number,
): Promise<MpState> {
  const { B, d, n, k } = shape;
  const start = mpInit(xs, B, d, k);
  const bufs = [
    uploadStorage(gpu, start.residual, "mp residual"),
    uploadStorage(gpu, start.idx, "mp slotIdx"),
    uploadStorage(gpu, start.val, "mp slotVal"),
    uploadStorage(gpu, start.pickIdx, "mp pickIdx"),
    uploadStorage(gpu, start.pickVal, "mp pickVal"),
    uploadStorage(gpu, start.info, "mp info"),
    uploadStorage(gpu, start.rnorm2, "mp rnorm2"),
  ];
  const grid = wrapGrid(gpu, B);
  const u = uniforms(gpu, {
    B,
    d,
    n,
    K: k,
    eps2: eps * eps,
    row_stride: grid.stride,
    _p0: 0,
    _p1: 0,
  }, ["eps2"]);
  const step: Dispatch = {
    kernel: MP_STEP,
    buffers: [decW, ...bufs, u],
    workgroups: grid.workgroups,
  };
  try {
    await runKernels(gpu, Array.from({ length: k }, () => step), "mp pursuit");
    releaseUniforms([step]);
    const [r, idx, val, pickIdx, pickVal, info, rnorm2] = bufs;
    return {
      residual: await readF32(gpu, r, B * d),
      idx: await readU32(gpu, idx, B * k),
      val: await readF32(gpu, val, B * k),
      K: k,
      pickIdx: await readU32(gpu, pickIdx, B * k),
      pickVal: await readF32(gpu, pickVal, B * k),
      info: await readU32(gpu, info, B * 4),
      rnorm2: await readF32(gpu, rnorm2, B),
    };
  } finally {
    for (const b of bufs) b.destroy();
  }
}
