/**
 * Sibling co-occurrence (paper §6.3, Table 3): how often children of the same parent fire
 * together. Definition (as in the reference's analysis code): for every privilege layer
 * l ≥ 1, the families are the layer-l children of each non-root parent; for every
 * unordered pair of siblings (a, b) of a family, IoU(a, b) = |T_a ∩ T_b| / |T_a ∪ T_b| with
 * T_f the tokens on which f fires (val > FIRE_THRESHOLD). The layer's rate is the mean IoU
 * over its sibling pairs; the Table 3 number is the mean over layers that have at least one
 * pair. Deviations from the reference: a pair that never fires at all (empty union) is
 * skipped on its own (the reference drops the whole family), and layers without sibling
 * pairs are left out of the mean (the reference counts them as 0).
 * Streaming, sparse pair accumulation on the host: per token only the fired siblings are
 * paired, so memory is O(#co-firing sibling pairs), never n×n.
 */
import { FeatureStats, FIRE_THRESHOLD, type SparseCodes, UNUSED_SLOT } from "./sparse_codes.ts";

/** Co-occurrence result. */
export interface CooccurrenceResult {
  /** Mean IoU over layers with sibling pairs (Table 3). */
  rate: number;
  /** Mean IoU per layer (index l; layer 0 and layers without pairs are null). */
  perLayer: (number | null)[];
  /** Sibling pairs evaluated per layer. */
  pairsPerLayer: number[];
}

/** Accumulates sibling co-firing counts over code batches. */
export class CooccurrenceAccumulator {
  readonly stats: FeatureStats;
  #layerOf: Uint32Array;
  #parentOf: Int32Array; // -1 for root children and layer 0
  #both = new Map<number, number>();

  /** Tree structure: features per layer and parents per layer (data contract, layer 0 all root). */
  constructor(readonly layerSizes: number[], parents: Int32Array[]) {
    const n = layerSizes.reduce((a, b) => a + b, 0);
    this.stats = new FeatureStats(n);
    this.#layerOf = new Uint32Array(n);
    this.#parentOf = new Int32Array(n).fill(-1);
    let off = 0;
    layerSizes.forEach((s, l) => {
      for (let i = 0; i < s; i++) {
        this.#layerOf[off + i] = l;
        const p = parents[l][i];
        if (l > 0 && p !== off) this.#parentOf[off + i] = p;
      }
      off += s;
    });
  }

  /** Add one batch of codes. */
  add(codes: SparseCodes): void {
    const n = this.stats.n;
    const fired: number[] = [];
    for (let b = 0; b < codes.rows; b++) {
      fired.length = 0;
      for (let s = 0; s < codes.k; s++) {
        const f = codes.idx[b * codes.k + s];
        if (
          f !== UNUSED_SLOT && codes.val[b * codes.k + s] > FIRE_THRESHOLD && this.#parentOf[f] >= 0
        ) {
          fired.push(f);
        }
      }
      for (let i = 0; i < fired.length; i++) {
        for (let j = i + 1; j < fired.length; j++) {
          const a = Math.min(fired[i], fired[j]), c = Math.max(fired[i], fired[j]);
          if (this.#parentOf[a] !== this.#parentOf[c] || this.#layerOf[a] !== this.#layerOf[c]) {
            continue;
          }
          const key = a * n + c;
          this.#both.set(key, (this.#both.get(key) ?? 0) + 1);
        }
      }
    }
    this.stats.add(codes);
  }

  /** The co-occurrence rates over everything added. */
  result(): CooccurrenceResult {
    const L = this.layerSizes.length;
    const families = new Map<string, number[]>();
    for (let f = 0; f < this.stats.n; f++) {
      if (this.#parentOf[f] < 0) continue;
      const key = `${this.#layerOf[f]}:${this.#parentOf[f]}`;
      const list = families.get(key) ?? [];
      list.push(f);
      families.set(key, list);
    }
    const sum = new Float64Array(L), pairs = new Array<number>(L).fill(0);
    const n = this.stats.n;
    for (const kids of families.values()) {
      const l = this.#layerOf[kids[0]];
      for (let i = 0; i < kids.length; i++) {
        for (let j = i + 1; j < kids.length; j++) {
          const both = this.#both.get(kids[i] * n + kids[j]) ?? 0;
          const union = this.stats.count[kids[i]] + this.stats.count[kids[j]] - both;
          if (union === 0) continue;
          sum[l] += both / union;
          pairs[l]++;
        }
      }
    }
    const perLayer = Array.from(sum, (s, l) => (pairs[l] > 0 ? s / pairs[l] : null));
    const present = perLayer.filter((v): v is number => v !== null);
    return {
      rate: present.length ? present.reduce((a, b) => a + b, 0) / present.length : 0,
      perLayer,
      pairsPerLayer: pairs,
    };
  }
}
