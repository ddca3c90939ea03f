/**
 * Kernels as data: a `Kernel` names a WGSL file in `kernels/`, an entry point and
 * its compile-time constants (WGSL `override`s). Those three are the only cache
 * key; sizes travel in uniforms so a new shape never compiles a new pipeline.
 *
 * WGSL is read with `import.meta.url`, which also works inside a `deno compile`
 * binary built with `--include kernels` (see the `compile` task).
 */
import type { Gpu } from "./device.ts";
import { GpuError } from "../errors.ts";
import { bindGroupFor } from "./bind_groups.ts";

/** A compute kernel: WGSL file, entry point, override constants. */
export interface Kernel {
  /** File name inside `kernels/`, e.g. "unpack_f16.wgsl". */
  file: string;
  /** Entry point (the `@compute fn`). */
  entry: string;
  /** Pipeline-overridable constants, e.g. `{ WG: 256 }`. Part of the cache key. */
  constants?: Record<string, number>;
}

const KERNEL_DIR = new URL("../../kernels/", import.meta.url);
const sources = new Map<string, Promise<string>>();

/** Read a WGSL file from `kernels/` (cached). */
export function loadWgsl(file: string): Promise<string> {
  let s = sources.get(file);
  if (!s) {
    s = Deno.readTextFile(new URL(file, KERNEL_DIR)).catch((e) => {
      sources.delete(file);
      throw new GpuError(`cannot read kernel source kernels/${file}: ${(e as Error).message}`);
    });
    sources.set(file, s);
  }
  return s;
}

/** Printable kernel name: file:entry{constants}. */
export function kernelName(k: Kernel): string {
  const c = k.constants ? JSON.stringify(k.constants) : "";
  return `${k.file}:${k.entry}${c}`;
}

const pipelines = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();
const modules = new WeakMap<GPUDevice, Map<string, Promise<GPUShaderModule>>>();

function shaderModule(gpu: Gpu, file: string): Promise<GPUShaderModule> {
  let byFile = modules.get(gpu.device);
  if (!byFile) modules.set(gpu.device, byFile = new Map());
  let m = byFile.get(file);
  if (!m) {
    m = (async () => {
      let code = await loadWgsl(file);
      if (gpu.hasF16 && /\benable f16;/.test(code) === false && /\bf16\b/.test(code)) {
        code = "enable f16;\n" + code;
      }
      const module = gpu.device.createShaderModule({ code, label: file });
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((msg) => msg.type === "error");
      if (errors.length) {
        throw new GpuError(
          `kernels/${file} does not compile:\n` +
            errors.map((e) => `  line ${e.lineNum}: ${e.message.trim()}`).join("\n"),
        );
      }
      return module;
    })();
    m.catch(() => byFile!.delete(file));
    byFile.set(file, m);
  }
  return m;
}

/** The compute pipeline of a kernel, compiled once per (file, entry, constants). */
export function getPipeline(gpu: Gpu, kernel: Kernel): Promise<GPUComputePipeline> {
  let cache = pipelines.get(gpu.device);
  if (!cache) pipelines.set(gpu.device, cache = new Map());
  const key = kernelName(kernel);
  let p = cache.get(key);
  if (!p) {
    p = (async () => {
      const module = await shaderModule(gpu, kernel.file);
      return await withErrorScope(gpu, key, () =>
        gpu.device.createComputePipeline({
          label: key,
          layout: "auto",
          compute: { module, entryPoint: kernel.entry, constants: kernel.constants ?? {} },
        }));
    })();
    p.catch(() => cache!.delete(key));
    cache.set(key, p);
  }
  return p;
}

/**
 * Run `fn` inside validation and out-of-memory error scopes; throw a GpuError
 * naming `label` if either caught something.
 */
export async function withErrorScope<T>(gpu: Gpu, label: string, fn: () => T): Promise<T> {
  gpu.device.pushErrorScope("out-of-memory");
  gpu.device.pushErrorScope("validation");
  let result: T | undefined;
  let thrown: unknown;
  try {
    result = fn();
  } catch (e) {
    thrown = e;
  }
  // Always pop both scopes, even when fn threw, so scopes never leak onto later work.
  const validation = await gpu.device.popErrorScope();
  const oom = await gpu.device.popErrorScope();
  if (validation) throw new GpuError(`${label}: WebGPU validation error: ${validation.message}`);
  if (oom) throw new GpuError(`${label}: GPU out of memory: ${oom.message}`);
  if (thrown !== undefined) throw thrown;
  return result as T;
}

/** One kernel launch: which kernel, its buffers in binding order, and the grid. */
export interface Dispatch {
  kernel: Kernel;
  /** Resources bound to @group(0) @binding(0..n-1), in order: buffers, or texture views. */
  buffers: (GPUBuffer | GPUTextureView)[];
  /** Number of workgroups in x, y, z (the most it may take when `indirect` is set). */
  workgroups: [number, number?, number?];
  /**
   * Take the workgroup counts from three u32 at `offset` of `buffer` (INDIRECT usage), written by
   * an earlier dispatch: lets the GPU choose between paths (0 workgroups = skipped).
   */
  indirect?: { buffer: GPUBuffer; offset: number };
}

/**
 * Record dispatches into one compute pass, in order, and submit them
 * together. Pipelines must already be compiled (call `getPipeline` first, or use
 * `runKernels`). Errors surface as GpuError naming the kernel via error scopes.
 */
export async function runKernels(gpu: Gpu, dispatches: Dispatch[], label = "dispatch") {
  const compiled = await Promise.all(dispatches.map((d) => getPipeline(gpu, d.kernel)));
  const names = dispatches.map((d) => kernelName(d.kernel)).join(", ");
  await withErrorScope(gpu, `${label} [${names}]`, () => {
    const encoder = gpu.device.createCommandEncoder({ label });
    encodeDispatches(gpu, encoder, dispatches, compiled);
    gpu.device.queue.submit([encoder.finish()]);
  });
}

/**
 * Encode dispatches (pipelines already compiled) into an existing command encoder, all in one
 * compute pass: WebGPU orders a pass's dispatches and makes each one's writes visible to the next,
 * and a pass per dispatch cost the host 15–80 µs more per dispatch (lavapipe, bench/README.md).
 */
export function encodeDispatches(
  gpu: Gpu,
  encoder: GPUCommandEncoder,
  dispatches: Dispatch[],
  compiled: GPUComputePipeline[],
) {
  const max = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  for (const d of dispatches) {
    const [x, y = 1, z = 1] = d.workgroups;
    if (x > max || y > max || z > max) {
      throw new GpuError(
        `${kernelName(d.kernel)}: dispatch ${x}x${y}x${z} exceeds ${max} workgroups per dimension`,
      );
    }
  }
  let pass: GPUComputePassEncoder | undefined;
  dispatches.forEach((d, i) => {
    const [x, y = 1, z = 1] = d.workgroups;
    if (!d.indirect && (x === 0 || y === 0 || z === 0)) return;
    const pipeline = compiled[i];
    const bindGroup = bindGroupFor(gpu, pipeline, d.buffers, () => kernelName(d.kernel));
    pass ??= encoder.beginComputePass({
      label: dispatches.length === 1 ? kernelName(d.kernel) : `${dispatches.length} dispatches`,
    });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    if (d.indirect) pass.dispatchWorkgroupsIndirect(d.indirect.buffer, d.indirect.offset);
    else pass.dispatchWorkgroups(x, y, z);
  });
  pass?.end();
}
