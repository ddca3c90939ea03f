/** Widen f16 data to f32 on the GPU (kernels/unpack_f16.wgsl). */
import type { Gpu } from "./device.ts";
import { createStorage, uploadStorage } from "./buffer.ts";
import { type Dispatch, type Kernel, runKernels } from "./kernel.ts";
import { sharedUniforms } from "./shared_uniforms.ts";

/** Workgroup size of the unpack kernel. */
const WG = 256;
const KERNEL: Kernel = { file: "unpack_f16.wgsl", entry: "main", constants: { WG } };

/** The dispatch widening `count` f16 values in `src` (packed two per u32) into `dst` as f32. */
export function unpackF16Op(gpu: Gpu, src: GPUBuffer, dst: GPUBuffer, count: number): Dispatch {
  const words = Math.ceil(count / 2);
  const groups = Math.ceil(words / WG);
  const maxX = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(groups, maxX);
  const y = Math.ceil(groups / x);
  const params = sharedUniforms(gpu, { n: count, row_words: x * WG });
  return { kernel: KERNEL, buffers: [src, dst, params], workgroups: [x, y] };
}

/**
 * Convert `count` f16 values already on the GPU (`src`, packed two per u32) into
 * `dst` as f32. Returns when the work is submitted.
 */
export async function unpackF16(gpu: Gpu, src: GPUBuffer, dst: GPUBuffer, count: number) {
  await runKernels(gpu, [unpackF16Op(gpu, src, dst, count)], "unpack_f16");
}

/** Upload f16 bits and return a new f32 storage buffer holding them widened. */
export async function uploadF16AsF32(
  gpu: Gpu,
  bits: Uint16Array,
  label: string,
): Promise<GPUBuffer> {
  const src = uploadStorage(gpu, bits, `${label} (f16)`);
  const dst = createStorage(gpu, bits.length * 4, label);
  await unpackF16(gpu, src, dst, bits.length);
  src.destroy();
  return dst;
}
