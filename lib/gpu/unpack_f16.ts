/** Widen f16 data to f32 on the GPU (kernels/unpack_f16.wgsl). */
import type { Gpu } from "./device.ts";
import { createStorage, uniforms, uploadStorage } from "./buffer.ts";
import { type Kernel, runKernels } from "./kernel.ts";

/** Workgroup size of the unpack kernel. */
const WG = 256;
const KERNEL: Kernel = { file: "unpack_f16.wgsl", entry: "main", constants: { WG } };

/**
 * Convert `count` f16 values already on the GPU (`src`, packed two per u32) into
 * `dst` as f32. Returns when the work is submitted.
 */
export async function unpackF16(gpu: Gpu, src: GPUBuffer, dst: GPUBuffer, count: number) {
  const words = Math.ceil(count / 2);
  const groups = Math.ceil(words / WG);
  const maxX = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(groups, maxX);
  const y = Math.ceil(groups / x);
  const params = uniforms(gpu, { n: count, row_words: x * WG });
  await runKernels(
    gpu,
    [{ kernel: KERNEL, buffers: [src, dst, params], workgroups: [x, y] }],
    "unpack_f16",
  );
  params.destroy();
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
