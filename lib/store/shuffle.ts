/**
 * Seeded permutations for the reader's shuffle. Every permutation is a pure function
 * of (seed, epoch, index), so a read cursor needs no saved generator state: the
 * random state of window w in epoch e is `mixSeed(seed, e, w)`.
 */

/** Hash three integers into a 32-bit seed (murmur3-style finaliser on a running mix). */
export function mixSeed(a: number, b: number, c: number): number {
  let h = 0x9e3779b9;
  for (const v of [a, b, c]) {
    // Split into two 32-bit halves so seeds up to 2^53 all matter.
    for (const part of [v >>> 0, Math.floor(v / 2 ** 32) >>> 0]) {
      h = Math.imul(h ^ part, 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35);
      h ^= h >>> 16;
    }
  }
  return h >>> 0;
}

/** Mulberry32 generator: uniform u32 values from a 32-bit state. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A uniformly random permutation of 0..n-1 (Fisher-Yates) from a 32-bit seed. */
export function permutation(n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const next = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    // Multiply-shift keeps the bias below 2^-32 · n, negligible for n < 2^20.
    const j = Math.floor((next() / 2 ** 32) * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
