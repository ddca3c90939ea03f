/**
 * Co-activation statistics of requested parent features with every feature, streamed
 * over token batches of sparse codes (kernels/coactivation.wgsl, TS twin below).
 *
 * Shapes: n features, m requested parents, codes [rows, k]. Outputs are [m, n] blocks
 * (row pi = parent parents[pi]); host memory holds m×n, never n×n. Per pair (p, c):
 *   count[p,c]    = #tokens where both fire (val > FIRE_THRESHOLD)
 *   prod[p,c]     = Σ a_p·a_c over those tokens
 *   parentSq[p,c] = Σ a_p² over those tokens (= Σ a_p² over the tokens where c fires)
 * The diagonal (c = p) is left 0.
 */
import type { Gpu } from "../gpu/device.ts";
import { createStorage, readF32, readU32, uniforms, uploadStorage } from "../gpu/buffer.ts";
import { type Kernel, runKernels } from "../gpu/kernel.ts";
import { GpuError } from "../errors.ts";
import { FIRE_THRESHOLD, type SparseCodes, UNUSED_SLOT } from "./sparse_codes.ts";

/** Invocations per workgroup (each handles k/WG slots of a row). */
const WG = 64;
const KERNEL: Kernel = { file: "coactivation.wgsl", entry: "main", constants: { WG } };

/** Co-activation statistics of m parents with all n features, row-major [m, n]. */
export interface CoactivationStats {
  /** Requested parents (row pi of every block belongs to parents[pi]). */
  parents: Uint32Array;
  /** Number of features (columns). */
  n: number;
  count: Uint32Array;
  prod: Float32Array;
  parentSq: Float32Array;
}

/** Empty statistics for `parents`. */
export function emptyCoactivation(parents: Uint32Array, n: number): CoactivationStats {
  const size = parents.length * n;
  return {
    parents,
    n,
    count: new Uint32Array(size),
    prod: new Float32Array(size),
    parentSq: new Float32Array(size),
  };
}

/**
 * TS reference twin of coactivation.wgsl: add one batch of codes into `stats` (in place),
 * in the kernel's order (rows in order, f32 sums).
 */
export function coactivationReference(stats: CoactivationStats, codes: SparseCodes): void {
  const { parents, n, count, prod, parentSq } = stats;
  const { idx, val, rows, k } = codes;
  parents.forEach((p, pi) => {
    for (let b = 0; b < rows; b++) {
      const row = b * k;
      let ap = 0;
      for (let s = 0; s < k; s++) if (idx[row + s] === p) ap = val[row + s];
      if (!(ap > FIRE_THRESHOLD)) continue;
      for (let s = 0; s < k; s++) {
        const c = idx[row + s];
        const a = val[row + s];
        if (c === p || c === UNUSED_SLOT || c >= n || !(a > FIRE_THRESHOLD)) continue;
        const o = pi * n + c;
        count[o] += 1;
        prod[o] = Math.fround(prod[o] + Math.fround(ap * a));
        parentSq[o] = Math.fround(parentSq[o] + Math.fround(ap * ap));
      }
    }
  });
}

/** Accumulates co-activation statistics on the GPU; call add() per batch, then read(). */
export class CoactivationAccumulator {
  #gpu: Gpu;
  #parentsBuf: GPUBuffer;
  #count: GPUBuffer;
  #prod: GPUBuffer;
  #parentSq: GPUBuffer;

  /** Zeroed [m, n] accumulators on the GPU for `parents` (m ≤ 65535, m·n·4 bytes ≤ binding limit). */
  constructor(gpu: Gpu, readonly parents: Uint32Array, readonly n: number) {
    const limit = gpu.device.limits.maxStorageBufferBindingSize;
    const bytes = parents.length * n * 4;
    const maxGroups = gpu.device.limits.maxComputeWorkgroupsPerDimension;
    if (bytes > limit || parents.length > maxGroups) {
      throw new GpuError(
        `coactivation: ${parents.length} parents × ${n} features needs ${bytes} bytes per block ` +
          `(limit ${limit}, at most ${maxGroups} parents); request fewer parents per pass`,
      );
    }
    this.#gpu = gpu;
    this.#parentsBuf = uploadStorage(
      gpu,
      parents.length ? parents : new Uint32Array(1),
      "coact parents",
    );
    // createStorage returns zero-initialised buffers (WebGPU guarantees it).
    this.#count = createStorage(gpu, bytes, "coact count");
    this.#prod = createStorage(gpu, bytes, "coact prod");
    this.#parentSq = createStorage(gpu, bytes, "coact parentSq");
  }

  /** The most parents one pass can hold for `n` features on this device. */
  static maxParents(gpu: Gpu, n: number): number {
    const limit = gpu.device.limits.maxStorageBufferBindingSize;
    return Math.max(
      1,
      Math.min(gpu.device.limits.maxComputeWorkgroupsPerDimension, Math.floor(limit / (4 * n))),
    );
  }

  /** Add one batch of codes (uploaded, dispatched, not waited for). */
  async add(codes: SparseCodes): Promise<void> {
    if (codes.rows === 0 || this.parents.length === 0) return;
    const gpu = this.#gpu;
    const idx = uploadStorage(gpu, codes.idx, "coact idx");
    const val = uploadStorage(gpu, codes.val, "coact val");
    const params = uniforms(gpu, {
      rows: codes.rows,
      k: codes.k,
      n: this.n,
      m: this.parents.length,
      fire: FIRE_THRESHOLD,
    }, ["fire"]);
    await runKernels(gpu, [{
      kernel: KERNEL,
      buffers: [idx, val, this.#parentsBuf, this.#count, this.#prod, this.#parentSq, params],
      workgroups: [this.parents.length],
    }], "coactivation");
    idx.destroy();
    val.destroy();
    params.destroy();
  }

  /** Read the accumulated [m, n] statistics back to the host. */
  async read(): Promise<CoactivationStats> {
    const size = this.parents.length * this.n;
    if (size === 0) return emptyCoactivation(this.parents, this.n);
    return {
      parents: this.parents,
      n: this.n,
      count: await readU32(this.#gpu, this.#count, size),
      prod: await readF32(this.#gpu, this.#prod, size),
      parentSq: await readF32(this.#gpu, this.#parentSq, size),
    };
  }

  /** Free the GPU buffers. */
  destroy(): void {
    for (const b of [this.#parentsBuf, this.#count, this.#prod, this.#parentSq]) b.destroy();
  }
}

/**
 * Co-activation statistics of `parents` over all code batches: on the GPU when `gpu` is
 * given (parents split into passes that fit the device), else with the TS reference.
 */
export async function coactivationStats(
  gpu: Gpu | null,
  batches: SparseCodes[],
  parents: Uint32Array,
  n: number,
): Promise<CoactivationStats> {
  if (!gpu) {
    const stats = emptyCoactivation(parents, n);
    for (const b of batches) coactivationReference(stats, b);
    return stats;
  }
  const out = emptyCoactivation(parents, n);
  const per = CoactivationAccumulator.maxParents(gpu, n);
  for (let start = 0; start < parents.length; start += per) {
    const chunk = parents.slice(start, start + per);
    const acc = new CoactivationAccumulator(gpu, chunk, n);
    try {
      for (const b of batches) await acc.add(b);
      const part = await acc.read();
      out.count.set(part.count, start * n);
      out.prod.set(part.prod, start * n);
      out.parentSq.set(part.parentSq, start * n);
    } finally {
      acc.destroy();
    }
  }
  return out;
}
