/**
 * Plain-loop TypeScript twins of the forward SAE kernels, written straight from the Arbor SAE
 * contract, for the kernel tests. Shapes: B rows, d = d_in, n features, K slots per row.
 */

import type { Gpu } from "../../lib/gpu/device.ts";
import { uploadStorage } from "../../lib/gpu/buffer.ts";
import { preChunkBytes } from "../../lib/sae/ops/topk.ts";

/** Upload rows × n pre values into a buffer of preChunkBytes (padded to 16 bytes, read as vec4). */
export function uploadPre(gpu: Gpu, pre: Float32Array, rows: number, n: number): GPUBuffer {
  const padded = new Float32Array(preChunkBytes(rows, n) / 4);
  padded.set(pre.subarray(0, rows * n));
  return uploadStorage(gpu, padded, "pre chunk");
}

/** STD_EPS of the contract (ref). */
const STD_EPS = 1e-5;
/** FIRE_THRESHOLD of the contract (ref). */
const FIRE_THRESHOLD = 1e-3;
/** Marker of an unused slot. */
export const NO_SLOT = 0xffffffff;

/** x [B, d] → xs [B, d], mean [B], std [B]. */
export function standardizeTwin(x: Float32Array, B: number, d: number) {
  const xs = new Float32Array(B * d), mean = new Float32Array(B), std = new Float32Array(B);
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[b * d + j];
    const m = s / d;
    let q = 0;
    for (let j = 0; j < d; j++) q += (x[b * d + j] - m) ** 2;
    const sd = Math.sqrt(q / d);
    for (let j = 0; j < d; j++) xs[b * d + j] = (x[b * d + j] - m) / (sd + STD_EPS);
    mean[b] = m;
    std[b] = sd;
  }
  return { xs, mean, std };
}

/** xs [B, d], encW [n, d], bDec [d] → pre [B, n]. */
export function encodeTwin(
  xs: Float32Array,
  encW: Float32Array,
  bDec: Float32Array,
  B: number,
  d: number,
  n: number,
): Float32Array {
  const pre = new Float32Array(B * n);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += encW[i * d + j] * (xs[b * d + j] - bDec[j]);
      pre[b * n + i] = s;
    }
  }
  return pre;
}

/** Indices of `cand` sorted by score descending, ties → lower index; the first k of them. */
function topOf(cand: number[], score: (i: number) => number, k: number): number[] {
  const sorted = [...cand].sort((a, b) => score(b) - score(a) || a - b);
  return sorted.slice(0, k);
}

/** Canonical score: -0 → +0 so that ties at zero break by index, as on the GPU. */
function canon(v: number): number {
  return v === 0 ? 0 : v;
}

/**
 * Tree-gated per-layer top-k (topk = one ungated layer): pre [B, n] → idx, val [B, K],
 * K = Σ kPerLayer. parents: per layer l ≥ 0, [s_l] i32, value o_l = root.
 */
export function selectTreeTwin(
  pre: Float32Array,
  B: number,
  n: number,
  layers: number[],
  kPerLayer: number[],
  parents: Int32Array[] | null,
) {
  const K = kPerLayer.reduce((a, b) => a + b, 0);
  const idx = new Uint32Array(B * K).fill(NO_SLOT), val = new Float32Array(B * K);
  for (let b = 0; b < B; b++) {
    const fired = new Set<number>();
    let o = 0, slot = 0;
    layers.forEach((s, l) => {
      const score = (i: number) => {
        const p = parents ? parents[l][i - o] : o;
        const ok = p === o || fired.has(p);
        return canon(ok ? pre[b * n + i] : 0);
      };
      const cand = Array.from({ length: s }, (_, t) => o + t);
      const chosen = topOf(cand, score, kPerLayer[l]);
      for (const i of chosen) {
        const v = Math.max(score(i), 0);
        idx[b * K + slot] = i;
        val[b * K + slot] = v;
        slot++;
      }
      for (let t = slot - chosen.length; t < slot; t++) {
        if (val[b * K + t] > FIRE_THRESHOLD) fired.add(idx[b * K + t]);
      }
      o += s;
    });
  }
  return { idx, val };
}

/**
 * AuxK selection: per row, candidates = dead features of layer `auxLayer` (gated: whose parent is
 * the root or fires on the row per the main slots idx/val [B, K]); top min(kAux, #candidates) pre
 * (ties → lower index), auxVal = max(pre, 0) → auxIdx, auxVal [B, kAux].
 */
export function selectAuxTwin(
  pre: Float32Array,
  B: number,
  n: number,
  layers: number[],
  parents: Int32Array[] | null,
  idx: Uint32Array,
  val: Float32Array,
  K: number,
  dead: Uint32Array,
  auxLayer: number,
  kAux: number,
) {
  const auxIdx = new Uint32Array(B * kAux).fill(NO_SLOT), auxVal = new Float32Array(B * kAux);
  const o = layers.slice(0, auxLayer).reduce((a, b) => a + b, 0);
  for (let b = 0; b < B; b++) {
    const fired = new Set<number>();
    for (let s = 0; s < K; s++) if (val[b * K + s] > FIRE_THRESHOLD) fired.add(idx[b * K + s]);
    const cand: number[] = [];
    for (let i = o; i < o + layers[auxLayer]; i++) {
      const p = parents ? parents[auxLayer][i - o] : o;
      if (dead[i] && (p === o || fired.has(p))) cand.push(i);
    }
    // The top kAux, in ascending feature order.
    const chosen = topOf(cand, (i) => canon(pre[b * n + i]), kAux).sort((x, y) => x - y);
    chosen.forEach((i, s) => {
      auxIdx[b * kAux + s] = i;
      auxVal[b * kAux + s] = Math.max(pre[b * n + i], 0);
    });
  }
  return { auxIdx, auxVal };
}

/**
 * Level reconstructions [L, B, d]: level l = bias + Σ slots with level ≤ l; level of a slot = first l
 * with key < bounds[l], key = slot position (mode "slot") or feature index (mode "feature").
 */
export function decodeLevelsTwin(
  idx: Uint32Array,
  val: Float32Array,
  B: number,
  K: number,
  decW: Float32Array,
  bDec: Float32Array | null,
  d: number,
  mode: "slot" | "feature",
  bounds: number[],
): Float32Array {
  const L = bounds.length;
  const out = new Float32Array(L * B * d);
  for (let l = 0; l < L; l++) {
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < d; j++) {
        let s = bDec ? bDec[j] : 0;
        for (let t = 0; t < K; t++) {
          const f = idx[b * K + t];
          if (f === NO_SLOT) continue;
          const key = mode === "slot" ? t : f;
          const lev = bounds.findIndex((e) => key < e);
          if (lev >= 0 && lev <= l) s += val[b * K + t] * decW[f * d + j];
        }
        out[(l * B + b) * d + j] = s;
      }
    }
  }
  return out;
}

/** Sum of squares of (a − b) over [B, d], optionally centred per column (batch mean removed). */
export function sumSqTwin(
  a: ArrayLike<number>,
  b: ArrayLike<number> | null,
  B: number,
  d: number,
  centered: boolean,
) {
  let total = 0;
  for (let j = 0; j < d; j++) {
    let mean = 0;
    if (centered) {
      for (let r = 0; r < B; r++) mean += a[r * d + j] - (b ? b[r * d + j] : 0);
      mean /= B;
    }
    for (let r = 0; r < B; r++) total += (a[r * d + j] - (b ? b[r * d + j] : 0) - mean) ** 2;
  }
  return total;
}

/**
 * Each row's K slots regrouped by block of dead rank (block = (rank[f] − rank[base]) >> shift,
 * capped at nb − 1; unused slots last), slot order kept inside a block; starts[b, j] = block j's
 * first position.
 */
export function groupSlotsTwin(
  idx: Uint32Array,
  val: Float32Array,
  B: number,
  K: number,
  rank: Uint32Array,
  base: number,
  shift: number,
  nb: number,
) {
  const outIdx = new Uint32Array(B * K), outVal = new Float32Array(B * K);
  const starts = new Uint32Array(B * (nb + 1));
  const blockOf = (f: number) =>
    f === NO_SLOT ? nb : Math.min(Math.floor((rank[f] - rank[base]) / 2 ** shift), nb - 1);
  for (let b = 0; b < B; b++) {
    let p = 0;
    for (let j = 0; j <= nb; j++) {
      starts[b * (nb + 1) + j] = p;
      for (let s = 0; s < K; s++) {
        if (blockOf(idx[b * K + s]) !== j) continue;
        outIdx[b * K + p] = idx[b * K + s];
        outVal[b * K + p] = val[b * K + s];
        p++;
      }
    }
  }
  return { idx: outIdx, val: outVal, starts };
}

/** Twin of kernels/dead_list.wgsl: [count, dead features ascending (n slots, rest 0), ranks]. */
export function deadListTwin(dead: Uint32Array): Uint32Array {
  const n = dead.length;
  const out = new Uint32Array(1 + 2 * n);
  let c = 0;
  for (let i = 0; i < n; i++) {
    out[1 + n + i] = c;
    if (dead[i] !== 0) out[1 + c++] = i;
  }
  out[0] = c;
  return out;
}
