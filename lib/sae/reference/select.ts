/**
 * Sparse code selection: TopK (and Matryoshka, which selects the same way), BatchTopK
 * (training and threshold inference) and the Tree SAE's gated per-layer TopK (paper Eq. 6).
 *
 * Codes use fixed slots: idx [B, K] u32 and val [B, K] f32; an unused slot has
 * idx = UNUSED_SLOT and val = 0. Within a row (tree: within a layer's block of k_l
 * slots, layers in order) slots are sorted by descending value, ties → lower feature
 * index. Legend: B = tokens, n = features, K = slots per row.
 */
import { FIRE_THRESHOLD, UNUSED_SLOT } from "./constants.ts";

/** Sparse codes of a batch. */
export interface Codes {
  /** [B, K] feature index per slot; UNUSED_SLOT where empty. */
  idx: Uint32Array;
  /** [B, K] code value per slot (≥ 0; 0 where empty or inactive). */
  val: Float32Array;
  /** Slots per row. */
  K: number;
}

/**
 * Indices of the k largest `score(i)` for i in [start, end), descending, ties → lower
 * index (an insertion-sorted buffer: O((end − start)·k) worst case, plain on purpose).
 */
export function topKRange(
  score: (i: number) => number,
  start: number,
  end: number,
  k: number,
): number[] {
  const keep: number[] = [];
  const vals: number[] = [];
  for (let i = start; i < end; i++) {
    const v = score(i);
    if (keep.length === k && !(v > vals[k - 1])) continue; // equal value: the earlier index wins
    let pos = keep.length === k ? k - 1 : keep.length;
    while (pos > 0 && vals[pos - 1] < v) {
      if (pos < keep.length) {
        keep[pos] = keep[pos - 1];
        vals[pos] = vals[pos - 1];
      } else {
        keep.push(keep[pos - 1]);
        vals.push(vals[pos - 1]);
      }
      pos--;
    }
    if (pos < keep.length) {
      keep[pos] = i;
      vals[pos] = v;
    } else {
      keep.push(i);
      vals.push(v);
    }
  }
  return keep;
}

/** Codes with every slot unused. */
export function emptyCodes(B: number, K: number): Codes {
  return { idx: new Uint32Array(B * K).fill(UNUSED_SLOT), val: new Float32Array(B * K), K };
}

/** TopK per row: the k largest pre (ties → lower index), val = max(pre, 0). pre [B, n] → K = k. */
export function selectTopK(pre: Float32Array, B: number, n: number, k: number): Codes {
  const codes = emptyCodes(B, k);
  for (let b = 0; b < B; b++) {
    const row = b * n;
    const top = topKRange((i) => pre[row + i], 0, n, k);
    top.forEach((i, s) => {
      codes.idx[b * k + s] = i;
      codes.val[b * k + s] = Math.max(pre[row + i], 0);
    });
  }
  return codes;
}

/** BatchTopK training codes plus the smallest kept positive value (for the inference threshold). */
export interface BatchTopKCodes extends Codes {
  /** Smallest kept value > 0, or 0 when nothing positive was kept (then θ is not updated). */
  minKept: number;
}

/**
 * BatchTopK (training): the k·B largest max(pre, 0) over the whole batch (ties → lower
 * row, then lower index), then each row keeps at most K of its winners (its K largest;
 * the rest are dropped — documented deviation so rows have fixed slots).
 */
export function selectBatchTopK(
  pre: Float32Array,
  B: number,
  n: number,
  k: number,
  K: number,
): BatchTopKCodes {
  const total = B * n;
  const want = Math.min(k * B, total);
  const relu = new Float32Array(total);
  for (let t = 0; t < total; t++) relu[t] = Math.max(pre[t], 0);
  const sorted = relu.slice().sort();
  const cut = sorted[total - want]; // the want-th largest value
  let above = 0;
  for (let t = 0; t < total; t++) if (relu[t] > cut) above++;
  let tiesLeft = want - above; // ties at `cut` go to the lowest flat index (row, then feature)
  const codes: BatchTopKCodes = { ...emptyCodes(B, K), minKept: 0 };
  let minKept = Infinity;
  for (let b = 0; b < B; b++) {
    const winners: number[] = [];
    for (let i = 0; i < n; i++) {
      const v = relu[b * n + i];
      if (v > cut) winners.push(i);
      else if (v === cut && tiesLeft > 0) {
        winners.push(i);
        tiesLeft--;
      }
    }
    const kept = topKRange((s) => relu[b * n + winners[s]], 0, winners.length, K);
    kept.forEach((s, slot) => {
      const i = winners[s];
      const v = relu[b * n + i];
      codes.idx[b * K + slot] = i;
      codes.val[b * K + slot] = v;
      if (v > 0 && v < minKept) minKept = v;
    });
  }
  codes.minKept = Number.isFinite(minKept) ? minKept : 0;
  return codes;
}

/** BatchTopK inference: val = pre where pre > θ, the K largest per row (ties → lower index). */
export function selectThreshold(
  pre: Float32Array,
  B: number,
  n: number,
  K: number,
  threshold: number,
): Codes {
  const codes = emptyCodes(B, K);
  for (let b = 0; b < B; b++) {
    const row = b * n;
    const top = topKRange((i) => (pre[row + i] > threshold ? pre[row + i] : -Infinity), 0, n, K);
    let slot = 0;
    for (const i of top) {
      if (!(pre[row + i] > threshold)) continue;
      codes.idx[b * K + slot] = i;
      codes.val[b * K + slot] = pre[row + i];
      slot++;
    }
  }
  return codes;
}

/**
 * Tree SAE gated TopK (paper Eq. 6). layers = sizes s_l, kPerLayer = k_l, parents[l] an
 * Int32Array [s_l] with values in [0, o_l] where o_l (= features before layer l) means
 * the root; layer 0's parents are all root (0). Layers are processed in order: feature i
 * of layer l is eligible on token b iff its parent is the root or the parent's val on b
 * (chosen in an earlier layer) > FIRE_THRESHOLD. Score = eligible ? pre : 0; the top k_l
 * scores are taken (ties → lower index) and val = max(score, 0), so a slot may hold an
 * inactive feature with val 0. K = Σ k_l, slots layer-major.
 */
export function selectTree(
  pre: Float32Array,
  B: number,
  n: number,
  layers: number[],
  kPerLayer: number[],
  parents: Int32Array[],
): Codes {
  const K = kPerLayer.reduce((a, b) => a + b, 0);
  const codes = emptyCodes(B, K);
  const rowVal = new Float32Array(n); // val of every feature on the current row (0 if unselected)
  for (let b = 0; b < B; b++) {
    rowVal.fill(0);
    let offset = 0;
    let slot = 0;
    for (let l = 0; l < layers.length; l++) {
      const par = parents[l];
      const o = offset;
      const score = (i: number) => {
        const p = par[i - o];
        const eligible = p === o || rowVal[p] > FIRE_THRESHOLD;
        return eligible ? pre[b * n + i] : 0;
      };
      const top = topKRange(score, o, o + layers[l], kPerLayer[l]);
      for (const i of top) {
        const v = Math.max(score(i), 0);
        codes.idx[b * K + slot] = i;
        codes.val[b * K + slot] = v;
        rowVal[i] = v; // parents always lie in earlier layers, so this never gates its own layer
        slot++;
      }
      offset += layers[l];
    }
  }
  return codes;
}
