/**
 * Uniform buffers shared by content: a training step builds the same ~30 small uniform blocks
 * (sizes, strides) every time, and creating and filling a buffer for each cost the host about 10 µs
 * apiece (lavapipe, bench/README.md "H100: statistics mapped at the next submit"). Equal contents get the same buffer, which
 * also lets `bindGroupFor` reuse the bind groups that name it. Shared buffers are never written
 * again and never destroyed by their users (`releaseUniforms` skips them).
 */
import type { Gpu } from "./device.ts";
import { packUniforms, UNIFORM } from "./buffer.ts";

/** Distinct contents kept per device before the cache starts afresh (bounds a long run's memory). */
export const SHARED_UNIFORMS_MAX = 4096;

const caches = new WeakMap<GPUDevice, Map<string, GPUBuffer>>();
const shared = new WeakSet<GPUBuffer>();

/** The device's uniform buffer holding these fields (u32 unless listed in `floats`). */
export function sharedUniforms(
  gpu: Gpu,
  fields: Record<string, number>,
  floats: string[] = [],
): GPUBuffer {
  let cache = caches.get(gpu.device);
  if (!cache) caches.set(gpu.device, cache = new Map());
  const data = packUniforms(fields, floats);
  const key = data.join(",");
  let buffer = cache.get(key);
  if (!buffer) {
    // Dropped, not destroyed: work already recorded may still use the buffers; the GC frees them.
    if (cache.size >= SHARED_UNIFORMS_MAX) cache.clear();
    buffer = gpu.device.createBuffer({ size: data.byteLength, usage: UNIFORM, label: "uniforms" });
    gpu.device.queue.writeBuffer(buffer, 0, data);
    shared.add(buffer);
    cache.set(key, buffer);
  }
  return buffer;
}

/** Whether `buffer` came from `sharedUniforms` (and so must not be destroyed). */
export function isSharedUniform(buffer: GPUBuffer): boolean {
  return shared.has(buffer);
}
