/**
 * Row-major f32 matrices [rows, d] mirrored into rgba32float 2-D array textures, for the kernels
 * that read them faster through texel fetches on software adapters (llvmpipe turns those into
 * SIMD gathers; storage loads are per-lane loops): the encoder GEMM (xs, encW) and the sparse
 * decode (decW; a smaller gain there). Texel (j/4, row % TEX_ROWS) of layer ⌊row / TEX_ROWS⌋ holds row[j..j+3].
 * Copies need 256-byte rows, hence d % 64 == 0.
 */
import type { Gpu } from "../../gpu/device.ts";
import { GpuError } from "../../errors.ts";
import { kernelTextureExtent } from "../../gpu/texture.ts";

/** Matrix rows per texture array layer (must equal TEX_ROWS in the WGSL that reads them). */
export const TEX_ROWS = 4096;

/** A [rows, d] matrix as an rgba32float array texture. */
export interface MatrixTexture {
  texture: GPUTexture;
  rows: number;
  d: number;
}

/** Whether width d can be mirrored (texture copies need bytesPerRow = 4d divisible by 256). */
export function matrixTextureSupported(d: number): boolean {
  return d > 0 && d % 64 === 0;
}

/** Allocate the texture for a [rows, d] matrix. */
export function createMatrixTexture(
  gpu: Gpu,
  rows: number,
  d: number,
  label: string,
): MatrixTexture {
  if (!matrixTextureSupported(d)) {
    throw new GpuError(
      `${label}: texture copies need d_in divisible by 64 (got ${d}); use the storage-buffer path`,
    );
  }
  // At least 2 layers: wgpu's GL backend makes a 1-layer texture a plain 2-D one, and the kernels'
  // texture_2d_array view of it then read zeros there (tests/gpu/gl_backend_test.ts).
  // Extents off powers of two: one compile of each kernel that reads it (lib/gpu/texture.ts).
  const [width, height] = kernelTextureExtent(gpu, d / 4, Math.min(rows, TEX_ROWS));
  const texture = gpu.device.createTexture({
    label,
    size: [width, height, Math.max(2, Math.ceil(rows / TEX_ROWS))],
    format: "rgba32float",
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
  });
  return { texture, rows, d };
}

/**
 * Record the copy of a [rows, d] storage buffer into its texture (after every change of the buffer);
 * with `srcRow`, of the buffer's rows from `srcRow` on (dst.rows of them) into the texture's first.
 */
export function encodeMatrixTextureCopy(
  encoder: GPUCommandEncoder,
  src: GPUBuffer,
  dst: MatrixTexture,
  srcRow = 0,
) {
  const { rows, d } = dst;
  for (let z = 0; z * TEX_ROWS < rows; z++) {
    const h = Math.min(TEX_ROWS, rows - z * TEX_ROWS);
    encoder.copyBufferToTexture(
      { buffer: src, offset: (srcRow + z * TEX_ROWS) * d * 4, bytesPerRow: d * 4, rowsPerImage: h },
      { texture: dst.texture, origin: [0, 0, z] },
      [d / 4, h, 1],
    );
  }
}

/** The view the kernels bind. */
export function matrixTextureView(t: MatrixTexture): GPUTextureView {
  return t.texture.createView({ dimension: "2d-array" });
}
