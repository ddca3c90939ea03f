/**
 * Bind groups reused across submits: a training step binds the same buffers to the same pipelines
 * every time (its uniforms shared by content, see `shared_uniforms.ts`), and `createBindGroup`
 * cost the host about 16 µs per dispatch (lavapipe, bench/README.md "H100: statistics mapped at the next submit").
 * Keyed by the pipeline and the identity of each bound resource; a resource destroyed since simply
 * never matches again.
 */
import type { Gpu } from "./device.ts";

/** Bind groups kept per device before the cache starts afresh (bounds a long run's memory). */
export const BIND_GROUPS_MAX = 4096;

const caches = new WeakMap<GPUDevice, Map<string, GPUBindGroup>>();
const layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();
const ids = new WeakMap<object, number>();
let nextId = 1;

function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, id = nextId++);
  return id;
}

/** The bind group of `resources` at @group(0) @binding(0..) of `pipeline` (made once, reused). */
export function bindGroupFor(
  gpu: Gpu,
  pipeline: GPUComputePipeline,
  resources: (GPUBuffer | GPUTextureView)[],
  label: () => string,
): GPUBindGroup {
  let cache = caches.get(gpu.device);
  if (!cache) caches.set(gpu.device, cache = new Map());
  let key = String(idOf(pipeline));
  for (const r of resources) key += "," + idOf(r);
  let group = cache.get(key);
  if (!group) {
    let layout = layouts.get(pipeline);
    if (!layout) layouts.set(pipeline, layout = pipeline.getBindGroupLayout(0));
    if (cache.size >= BIND_GROUPS_MAX) cache.clear();
    group = gpu.device.createBindGroup({
      label: label(),
      layout,
      entries: resources.map((r, binding) => ({
        binding,
        resource: r instanceof GPUBuffer ? { buffer: r } : r,
      })),
    });
    cache.set(key, group);
  }
  return group;
}
