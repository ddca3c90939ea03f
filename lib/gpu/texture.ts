/**
 * Texture helpers for the kernels that read matrices through texel fetches.
 *
 * llvmpipe (Mesa's software driver) compiles one variant of a shader per combination of the
 * static state of the textures bound to it, and that state includes whether each texture's width
 * and height are powers of two. A kernel that meets textures of both kinds is compiled once for
 * each: the subgroup encoder GEMM takes ~20 s of LLVM time per variant on a cold shader cache, the
 * 64-wide block ~90 s. Every texture a kernel reads is therefore given extents that are not
 * powers of two (`kernelTextureExtent`; the extra texels are never read), so each kernel has one
 * variant whatever the shapes (a batch of 4 096 rows, n = 24 576 features, a test's 70 rows).
 */
import type { Gpu } from "./device.ts";

/** `size` if it is not a power of two, else the next size that is not (1 → 3, 4 096 → 4 097). */
export function notPowerOfTwo(size: number): number {
  const pot = (v: number) => v > 0 && (v & (v - 1)) === 0;
  let v = size;
  while (pot(v)) v++;
  return v;
}

/**
 * The [width, height] to allocate for a texture whose kernels read [width, height] texels: both
 * moved off powers of two, unless that passes the device's 2-D limit (then left as they are).
 */
export function kernelTextureExtent(gpu: Gpu, width: number, height: number): [number, number] {
  const max = gpu.device.limits.maxTextureDimension2D;
  const pad = (v: number) => {
    const p = notPowerOfTwo(v);
    return p <= max ? p : v;
  };
  return [pad(width), pad(height)];
}

const placeholders = new WeakMap<GPUDevice, Map<string, GPUTextureView>>();
/**
 * A small rgba32float texture (one per device and use) to bind where a kernel ignores a texture it
 * declares: "sampled" for a `texture_2d<f32>`, "sampled-array" for a `texture_2d_array<f32>`,
 * "storage" for a write-only storage texture. Its extents are off powers of two like every kernel
 * texture's, so binding it costs no extra compile.
 */
export function placeholderTexture(
  gpu: Gpu,
  use: "sampled" | "sampled-array" | "storage",
): GPUTextureView {
  let views = placeholders.get(gpu.device);
  if (!views) placeholders.set(gpu.device, views = new Map());
  let v = views.get(use);
  if (!v) {
    const array = use === "sampled-array";
    const texture = gpu.device.createTexture({
      label: `unused ${use} texture`,
      // Two layers: wgpu's GL backend turns a one-layer texture into a plain 2-D one.
      size: [...kernelTextureExtent(gpu, 1, 1), array ? 2 : 1],
      format: "rgba32float",
      usage: use === "storage" ? GPUTextureUsage.STORAGE_BINDING : GPUTextureUsage.TEXTURE_BINDING,
    });
    v = texture.createView(array ? { dimension: "2d-array" } : {});
    views.set(use, v);
  }
  return v;
}
