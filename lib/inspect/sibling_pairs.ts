/**
 * Pairwise co-occurrence of sibling features (paper §6.3) for display: for every pair of
 * children of the same parent, the number of tokens on which both fire, kept sparsely
 * (only pairs that co-fire are stored). IoU(a, b) = both / (count_a + count_b − both), the
 * per-pair value whose mean over a layer is lib/eval/cooccurrence.ts's Table 3 rate.
 */
import { FIRE_THRESHOLD, type SparseCodes, UNUSED_SLOT } from "../eval/sparse_codes.ts";

/** Co-firing counts of sibling pairs. */
export class SiblingPairs {
  readonly #both = new Map<number, number>();
  readonly #parentOf: Int32Array;

  /** `parentOf` [n]: each feature's parent, −1 for the root (root children are not siblings here). */
  constructor(parentOf: Int32Array) {
    this.#parentOf = parentOf;
  }

  /** Add one batch of codes. */
  add(codes: SparseCodes): void {
    const fired: number[] = [];
    const n = this.#parentOf.length;
    for (let b = 0; b < codes.rows; b++) {
      fired.length = 0;
      for (let s = 0; s < codes.k; s++) {
        const f = codes.idx[b * codes.k + s];
        if (f === UNUSED_SLOT || !(codes.val[b * codes.k + s] > FIRE_THRESHOLD)) continue;
        if (this.#parentOf[f] >= 0) fired.push(f);
      }
      for (let i = 0; i < fired.length; i++) {
        for (let j = i + 1; j < fired.length; j++) {
          if (this.#parentOf[fired[i]] !== this.#parentOf[fired[j]]) continue;
          const a = Math.min(fired[i], fired[j]), c = Math.max(fired[i], fired[j]);
          const key = a * n + c;
          this.#both.set(key, (this.#both.get(key) ?? 0) + 1);
        }
      }
    }
  }

  /** Tokens on which siblings `a` and `b` both fired. */
  both(a: number, b: number): number {
    const n = this.#parentOf.length;
    return this.#both.get(Math.min(a, b) * n + Math.max(a, b)) ?? 0;
  }

  /** IoU of the token sets of `a` and `b` given their firing counts; 0 when neither fired. */
  iou(a: number, b: number, count: ArrayLike<number>): number {
    const both = this.both(a, b);
    const union = count[a] + count[b] - both;
    return union > 0 ? both / union : 0;
  }
}
