/**
 * Seeded random numbers for initialisation and shuffling: mulberry32 (32-bit state,
 * period 2^32) plus a Box-Muller normal sampler. The whole generator state is one
 * u32 (`state`), so a trainer can save it in JSON and resume the exact sequence.
 */

/** A mulberry32 generator whose state is a single u32 (serialisable for resume). */
export class Rng {
  /** Current 32-bit state; save it and pass it to `new Rng(state)` to resume. */
  state: number;

  /** Start from `seed` (any number; taken modulo 2^32). */
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution; advances the state once. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.min(n - 1, Math.floor(this.next() * n));
  }

  /**
   * Standard normal sample (Box-Muller, cosine branch only). It always draws exactly
   * two uniforms, so no cached second sample hides outside `state`.
   */
  normal(): number {
    const u = 1 - this.next(); // (0, 1]: log never sees 0
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Fill `out` with standard normal samples, in index order. */
  fillNormal(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return out;
  }
}
