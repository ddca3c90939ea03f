/**
 * Parent capacities C_p for dynamic allocation (paper §4 "Obtaining Optimal Feature Allocation",
 * App. G) and parent eligibility.
 *
 * Capacity rule. The paper says: "we add the batch loss to the running sum of the parent feature
 * for each instance in the batch that it activates on". The reference implementation (and issue
 * #4, DESIGN §5) instead splits each step's loss equally among the candidate parents that fired at
 * least once in the batch, the root always counting as fired. We default to the split rule
 * (`"split"`): it is what produced the released checkpoints, and it keeps the total capacity
 * added per step equal to the loss whatever the batch size. The paper's literal wording is
 * available as `"per-instance"`: C_p += loss · (number of tokens of the batch p fired on), the
 * root counting every token. Algorithm 1 is invariant to a common scale of C, but the two rules
 * rank parents differently (per-instance favours frequently firing parents more).
 *
 * Every layer l ≥ 1 keeps its own capacities over its candidate parents: the o_l features of
 * earlier layers plus the root (index o_l). Layer 0 has only the root and never reallocates.
 */
import { ArborError } from "../errors.ts";
import { layerOfEachFeature, layerOffsets } from "./structure.ts";

/** A parent must have fired within this many tokens to receive children (paper App. G). */
export const PARENT_ELIGIBILITY_TOKENS = 50_000;

/** How a step's loss is credited to parents (see the module doc). */
export type CapacityRule = "split" | "per-instance";

/** Running capacities C_p for every layer l ≥ 1 of a tree. */
export class CapacityAccumulator {
  /** Layer sizes s_l. */
  readonly layers: readonly number[];
  /** Layer offsets o_l. */
  readonly offsets: readonly number[];
  /** Which rule credits the loss. */
  readonly rule: CapacityRule;
  /** capacity[l]: Float64Array [o_l + 1] (entry o_l = root); capacity[0] is [1] and unused. */
  readonly capacity: Float64Array[];
  /** Steps accumulated since the last reset, per layer. */
  readonly steps: number[];
  #layerOf: Uint8Array;
  #fired: Uint32Array;

  /** Zero capacities for a tree with these layer sizes. */
  constructor(layers: readonly number[], rule: CapacityRule = "split") {
    if (rule !== "split" && rule !== "per-instance") {
      throw new ArborError(`capacity rule "${rule}": expected "split" or "per-instance"`);
    }
    this.layers = [...layers];
    this.offsets = layerOffsets(layers);
    this.rule = rule;
    this.capacity = this.offsets.map((o) => new Float64Array(o + 1));
    this.steps = layers.map(() => 0);
    this.#layerOf = layerOfEachFeature(layers);
    this.#fired = new Uint32Array(this.#layerOf.length);
  }

  /**
   * Credit one step's `loss` to the parents that fired. `fireCounts` [n]: tokens of the batch
   * each feature fired on (val > 1e-3). `batchTokens` is only needed by the per-instance rule
   * (the root fires on every token). O(n + fired·L) per step.
   */
  accumulate(loss: number, fireCounts: ArrayLike<number>, batchTokens?: number): void {
    const n = this.#layerOf.length;
    if (fireCounts.length !== n) {
      throw new ArborError(
        `capacity: fire counts have ${fireCounts.length} entries but the tree has ${n} features`,
      );
    }
    if (!Number.isFinite(loss) || loss < 0) {
      throw new ArborError(
        `capacity: step loss ${loss} is not a finite non-negative number (training diverged?)`,
      );
    }
    const L = this.layers.length;
    if (L < 2) return;
    // Compact list of fired features (ascending), and fired count per layer.
    const firedPerLayer = new Array<number>(L).fill(0);
    let nf = 0;
    for (let f = 0; f < n; f++) {
      if (fireCounts[f] > 0) {
        this.#fired[nf++] = f;
        firedPerLayer[this.#layerOf[f]]++;
      }
    }
    if (this.rule === "per-instance") {
      if (batchTokens === undefined || !(batchTokens > 0)) {
        throw new ArborError(`capacity: the per-instance rule needs the batch's token count`);
      }
      for (let j = 0; j < nf; j++) {
        const f = this.#fired[j];
        const add = loss * fireCounts[f];
        for (let l = this.#layerOf[f] + 1; l < L; l++) this.capacity[l][f] += add;
      }
      for (let l = 1; l < L; l++) {
        this.capacity[l][this.offsets[l]] += loss * batchTokens;
        this.steps[l]++;
      }
      return;
    }
    // Split rule: layer l's share = loss / (fired candidates among features < o_l, plus root).
    const share = new Float64Array(L);
    let firedBefore = 0;
    for (let l = 1; l < L; l++) {
      firedBefore += firedPerLayer[l - 1];
      share[l] = loss / (firedBefore + 1);
      this.capacity[l][this.offsets[l]] += share[l];
      this.steps[l]++;
    }
    for (let j = 0; j < nf; j++) {
      const f = this.#fired[j];
      for (let l = this.#layerOf[f] + 1; l < L; l++) this.capacity[l][f] += share[l];
    }
  }

  /** Zero the capacities of `layer` (default: every layer), as after a reallocation. */
  reset(layer?: number): void {
    for (let l = 0; l < this.capacity.length; l++) {
      if (layer === undefined || layer === l) {
        this.capacity[l].fill(0);
        this.steps[l] = 0;
      }
    }
  }

  /** Capacities keyed `capacity_l` (l ≥ 1) for the trainer state file. */
  toState(): Record<string, Float64Array> {
    const out: Record<string, Float64Array> = {};
    for (let l = 1; l < this.layers.length; l++) out[`capacity_${l}`] = this.capacity[l].slice();
    return out;
  }

  /** Load capacities saved by `toState` (missing layers stay 0); `source` names the file. */
  loadState(state: Record<string, ArrayLike<number>>, source = "trainer state"): void {
    for (let l = 1; l < this.layers.length; l++) {
      const v = state[`capacity_${l}`];
      if (v === undefined) continue;
      if (v.length !== this.capacity[l].length) {
        throw new ArborError(
          `${source}: capacity_${l} has ${v.length} entries, expected ${this.capacity[l].length} ` +
            `(o_${l} + 1 parents); the state belongs to a different tree`,
        );
      }
      this.capacity[l].set(Array.from(v));
    }
  }
}

/**
 * Eligible parents of layer l (App. G): Uint8Array [o_l + 1], 1 where the feature fired within
 * `thresholdTokens` (tokensSinceFired < threshold); the root (index o_l) always.
 */
export function eligibleParents(
  offsetL: number,
  tokensSinceFired: ArrayLike<number>,
  thresholdTokens: number = PARENT_ELIGIBILITY_TOKENS,
): Uint8Array {
  const out = new Uint8Array(offsetL + 1);
  for (let p = 0; p < offsetL; p++) out[p] = tokensSinceFired[p] < thresholdTokens ? 1 : 0;
  out[offsetL] = 1;
  return out;
}
