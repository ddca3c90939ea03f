/**
 * Algorithm 1 of the paper (App. G): the optimal number of children per parent,
 *
 *   k*_l = argmax_k  min_{p : k_p > 0} C_p / k_p   s.t.  Σ_p k_p = s_l,  k_p = 0 if p ineligible,
 *
 * found greedily: give one child at a time to the parent with the largest payoff C_p/(k_p + 1).
 * By Theorem 4.1 the optimum τ* is the s_l-th largest element of {C_p / j : j ≥ 1}, and the greedy
 * picks exactly the s_l largest elements, so it is optimal. With a binary max-heap over the
 * eligible parents it costs O(m_l + s_l log m_l).
 *
 * Ties (equal payoffs) are broken deterministically: the parent with fewer children so far
 * first, then the lower parent index. Any tie order is optimal (the s_l largest elements of the
 * multiset have the same minimum); "fewer children first" also spreads children round-robin when
 * every eligible capacity is 0 (all allocations score 0 then), which matches the reference's
 * uniform fallback for that case.
 */
import { ArborError } from "../errors.ts";
import { MaxHeap } from "./max_heap.ts";

/**
 * Algorithm 1: children per parent maximising min C_p/k_p. `capacity` [m]; `eligible` [m]
 * (truthy = may receive children; default all). Returns Uint32Array [m] summing to `nChildren`,
 * or all zeros when no parent is eligible.
 */
export function greedyAllocation(
  capacity: ArrayLike<number>,
  nChildren: number,
  eligible?: ArrayLike<number | boolean>,
): Uint32Array {
  const m = capacity.length;
  if (eligible !== undefined && eligible.length !== m) {
    throw new ArborError(
      `greedyAllocation: eligible has ${eligible.length} entries but capacity has ${m}`,
    );
  }
  if (!Number.isInteger(nChildren) || nChildren < 0) {
    throw new ArborError(
      `greedyAllocation: nChildren = ${nChildren} must be a non-negative integer`,
    );
  }
  const quotas = new Uint32Array(m);
  const heap = new MaxHeap(m);
  for (let p = 0; p < m; p++) {
    const c = capacity[p];
    if (!(c >= 0 && Number.isFinite(c))) {
      throw new ArborError(
        `capacity[${p}] = ${c}: capacities are accumulated losses and must be finite and ≥ 0 ` +
          `(a NaN here means the training loss diverged)`,
      );
    }
    if (eligible === undefined || eligible[p]) heap.pushUnordered(c, 0, p);
  }
  if (heap.size === 0) return quotas;
  heap.heapify();
  for (let assigned = 0; assigned < nChildren; assigned++) {
    const p = heap.peekId();
    const k = ++quotas[p];
    heap.replaceTop(capacity[p] / (k + 1), k, p);
  }
  return quotas;
}

/** Objective of Eq. 10: min over parents with k_p > 0 of C_p / k_p (Infinity if none). */
export function minPayoff(capacity: ArrayLike<number>, quotas: ArrayLike<number>): number {
  let best = Infinity;
  for (let p = 0; p < quotas.length; p++) {
    if (quotas[p] > 0) best = Math.min(best, capacity[p] / quotas[p]);
  }
  return best;
}
