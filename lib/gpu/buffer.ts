/** Buffer helpers: create, upload, read back, and uniform packing. */
import type { Gpu } from "./device.ts";
import { GpuError } from "../errors.ts";

/** Usage of a storage buffer we can write from the host and read back. */
export const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
/** Usage of a uniform buffer written from the host. */
export const UNIFORM = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;

/** Round up to a multiple of 4 bytes (WebGPU's copy alignment); never 0. */
export function align4(bytes: number): number {
  return Math.max(4, Math.ceil(bytes / 4) * 4);
}

/** Create a storage buffer of `bytes` bytes (rounded up to 4), labelled. */
export function createStorage(gpu: Gpu, bytes: number, label: string): GPUBuffer {
  const size = align4(bytes);
  if (size > gpu.device.limits.maxBufferSize) {
    throw new GpuError(
      `${label}: buffer of ${size} bytes exceeds the device's maxBufferSize ` +
        `(${gpu.device.limits.maxBufferSize}); use smaller batches or chunks`,
    );
  }
  return gpu.device.createBuffer({ size, usage: STORAGE, label });
}

/** Create a storage buffer holding `data`. */
export function uploadStorage(gpu: Gpu, data: ArrayBufferView, label: string): GPUBuffer {
  const buffer = createStorage(gpu, data.byteLength, label);
  writeBuffer(gpu, buffer, data);
  return buffer;
}

/** Write `data` into `buffer` at `offset`, padding the tail to a multiple of 4 bytes. */
export function writeBuffer(gpu: Gpu, buffer: GPUBuffer, data: ArrayBufferView, offset = 0) {
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  if (bytes.byteLength % 4 === 0) {
    gpu.device.queue.writeBuffer(buffer, offset, bytes);
  } else {
    const padded = new Uint8Array(align4(bytes.byteLength));
    padded.set(bytes);
    gpu.device.queue.writeBuffer(buffer, offset, padded);
  }
}

/** A uniform buffer from 32-bit fields: numbers are written as u32 unless listed in `floats`. */
export function uniforms(
  gpu: Gpu,
  fields: Record<string, number>,
  floats: string[] = [],
): GPUBuffer {
  const data = packUniforms(fields, floats);
  const buffer = gpu.device.createBuffer({
    size: data.byteLength,
    usage: UNIFORM,
    label: "uniforms",
  });
  gpu.device.queue.writeBuffer(buffer, 0, data);
  return buffer;
}

/** The bytes of a uniform block (16-byte multiple): u32 fields unless listed in `floats`. */
export function packUniforms(
  fields: Record<string, number>,
  floats: string[] = [],
): Uint32Array<ArrayBuffer> {
  const names = Object.keys(fields);
  const size = Math.max(16, Math.ceil(names.length / 4) * 16);
  const data = new ArrayBuffer(size);
  const u32 = new Uint32Array(data);
  const f32 = new Float32Array(data);
  names.forEach((name, i) => {
    if (floats.includes(name)) f32[i] = fields[name];
    else u32[i] = fields[name] >>> 0;
  });
  return u32;
}

/** Copy `bytes` bytes of a GPU buffer back to the host. */
export async function readBuffer(
  gpu: Gpu,
  buffer: GPUBuffer,
  bytes = buffer.size,
  offset = 0,
): Promise<ArrayBuffer> {
  const size = align4(bytes);
  const staging = gpu.device.createBuffer({
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    label: `readback ${buffer.label}`,
  });
  const encoder = gpu.device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, offset, staging, 0, size);
  gpu.device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}

/** Read a buffer back as f32. */
export async function readF32(gpu: Gpu, buffer: GPUBuffer, count?: number): Promise<Float32Array> {
  const bytes = count === undefined ? buffer.size : count * 4;
  return new Float32Array(await readBuffer(gpu, buffer, bytes));
}

/** Read a buffer back as u32. */
export async function readU32(gpu: Gpu, buffer: GPUBuffer, count?: number): Promise<Uint32Array> {
  const bytes = count === undefined ? buffer.size : count * 4;
  return new Uint32Array(await readBuffer(gpu, buffer, bytes));
}

const placeholders = new WeakMap<GPUDevice, Record<"read" | "write", GPUBuffer>>();
/**
 * A zeroed 16-byte storage buffer (one per device and access) to bind where a kernel ignores a
 * binding it declares (an override or a layout turned the use off). Use "read" for read-only
 * bindings and "write" for read_write ones: a dispatch may bind each any number of times, but
 * WebGPU forbids one buffer as read-only and as writable storage in the same dispatch.
 */
export function placeholderBuffer(gpu: Gpu, access: "read" | "write"): GPUBuffer {
  let b = placeholders.get(gpu.device);
  if (!b) {
    b = {
      read: createStorage(gpu, 16, "unused read-only binding"),
      write: createStorage(gpu, 16, "unused writable binding"),
    };
    placeholders.set(gpu.device, b);
  }
  return b[access];
}
