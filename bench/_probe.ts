/**
 * Made-up inputs shared by the kernel probes (bench/*_probe.ts).
 */
import type { Gpu } from "../lib/gpu/device.ts";
import { uploadStorage } from "../lib/gpu/buffer.ts";
import { createPreTexture, encodePreTextureCopy, type PreTexture } from "../lib/sae/ops/topk.ts";

/** A 32-bit LCG in integer arithmetic (a float one repeats values and flatters cache-bound kernels). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
}

/** Pseudo-random pre-activations [rows, n]: uniform in [-1, 1) plus a sine of the position. */
export function randomPre(rows: number, n: number): Float32Array {
  const next = lcg(1);
  const pre = new Float32Array(rows * n);
  for (let i = 0; i < pre.length; i++) pre[i] = (next() / 2 ** 32 - 0.5) * 2 + Math.sin(i);
  return pre;
}

/** pre uploaded to a buffer and copied into its texture mirror, as the engine has it. */
export function uploadPreWithTexture(
  gpu: Gpu,
  pre: Float32Array,
  rows: number,
  n: number,
): { preBuf: GPUBuffer; tex: PreTexture } {
  const preBuf = uploadStorage(gpu, pre, "pre");
  const tex = createPreTexture(gpu, rows, n);
  const enc = gpu.device.createCommandEncoder();
  encodePreTextureCopy(enc, preBuf, tex, rows);
  gpu.device.queue.submit([enc.finish()]);
  return { preBuf, tex };
}
