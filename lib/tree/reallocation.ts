/**
 * Algorithm 2 of the paper (App. G): move dead children towards the optimal allocation k*_l of
 * Algorithm 1, and the root reset of App. C.
 *
 * Per layer l ≥ 1 (layer 0 hangs from the root only):
 *  1. k_l  = current children per candidate parent (o_l earlier features + root),
 *     k*_l = greedyAllocation(C_l, s_l, eligible_l).
 *  2. Donors: parents with k_p > k*_p give up to k_p − k*_p of their *dead* children (lowest
 *     child index first). Alive children never move.
 *  3. First fit: donors are visited in ascending parent index, receivers (k_p < k*_p) in
 *     ascending parent index; the i-th moving child goes to the i-th free receiver slot.
 *     Σ(k − k*)⁺ = Σ(k* − k)⁺, so every mover finds a slot; a receiver stays short only when the
 *     donors ran out of dead children ("as far as dead children allow").
 * The caller then resets the capacities (`CapacityAccumulator.reset`).
 *
 * This ("surplus" pool, the default) follows issue #4 and the reference code. The paper's own
 * wording (App. G: "sample the pool of dead child features ... first fit strategy for all of the
 * parents that have less than the optimal number of non-dead child features") is available as
 * the "all-dead" pool:
 *  2'. Pool: every dead child of the layer, ascending child index (we take all of them,
 *      deterministically, instead of sampling).
 *  3'. Deficits: k*_p − (alive children of p), clipped at 0. First fit: parents in ascending
 *      index take pool children in order until the pool is empty or every deficit is filled;
 *      dead children left over keep their parent. A dead child may land on its own parent
 *      (not a move). Σ deficits ≥ Σk* − alive = dead, so with any eligible parent the pool
 *      always empties: every dead child is re-placed, also those of parents at their optimum.
 *
 * Root reset (App. C, at half of training): every dead child of every layer l ≥ 1 becomes a child
 * of the root, so it may fire on any token; afterwards allocation stays frozen.
 */
import { greedyAllocation, minPayoff } from "./allocation.ts";
import { eligibleParents, PARENT_ELIGIBILITY_TOKENS } from "./capacity.ts";
import { ArborError } from "../errors.ts";
import { childCounts, type TreeStructure } from "./structure.ts";

/** How one parent's child count changed in a layer. */
export interface ParentChange {
  /** Global parent index (o_l = root). */
  parent: number;
  /** Children before. */
  before: number;
  /** Children after. */
  after: number;
  /** Algorithm 1's optimum k*_p (undefined for the root reset). */
  optimal?: number;
}

/** What a reallocation did to one layer. */
export interface LayerReport {
  /** Layer index l (≥ 1). */
  layer: number;
  /** s_l. */
  children: number;
  /** Dead children of the layer when the reallocation ran. */
  dead: number;
  /** Children that moved (all of them dead). */
  moved: number;
  /** Candidate parents that were eligible (root included); undefined for the root reset. */
  eligibleParents?: number;
  /** min C_p/k_p of the current allocation, of k*, and of the new allocation (Eq. 10). */
  payoff?: { before: number; optimal: number; after: number };
  /** Σ_p |k_p − k*_p| / 2 before and after: how far the allocation is from Algorithm 1's. */
  distanceToOptimal?: { before: number; after: number };
  /** Parents whose child count changed, ascending. */
  changes: ParentChange[];
  /** The moves: local child index, old parent, new parent (parallel arrays, length `moved`). */
  moves: { child: Uint32Array; from: Int32Array; to: Int32Array };
}

/** Result of a reallocation or root reset: new parent arrays (the input is not modified). */
export interface ReallocationResult {
  /** Parents per layer after the operation (layer 0 copied unchanged). */
  parents: Int32Array[];
  /** One report per layer l ≥ 1. */
  layers: LayerReport[];
}

/** Which dead children Algorithm 2 re-places (see the file comment). */
export type ReallocationPool = "surplus" | "all-dead";
/** Accepted ReallocationPool values, default first. */
export const REALLOCATION_POOLS: readonly ReallocationPool[] = ["surplus", "all-dead"];

/** Inputs of Algorithm 2 besides the tree. */
export interface ReallocationInputs {
  /** capacity[l]: C_p over the o_l + 1 candidate parents of layer l (l ≥ 1; index 0 unused). */
  capacity: ArrayLike<ArrayLike<number>>;
  /** Tokens since each feature last fired [n] (the engine's dead tracking). */
  tokensSinceFired: ArrayLike<number>;
  /** A feature is dead when tokensSinceFired ≥ deadTokens (10M in the paper). */
  deadTokens: number;
  /**
   * Parent eligibility window (App. G); default PARENT_ELIGIBILITY_TOKENS. Capped at deadTokens
   * so a dead feature never receives children (only matters when a short run shrinks deadTokens
   * below 50,000; in the paper's setting 50k ≪ 10M).
   */
  eligibilityTokens?: number;
  /** Which dead children move (default "surplus": only parents' excess over k*). */
  pool?: ReallocationPool;
}

/** Dead mask [n]: 1 where tokensSinceFired ≥ deadTokens. */
export function deadMask(tokensSinceFired: ArrayLike<number>, deadTokens: number): Uint8Array {
  const out = new Uint8Array(tokensSinceFired.length);
  for (let f = 0; f < out.length; f++) out[f] = tokensSinceFired[f] >= deadTokens ? 1 : 0;
  return out;
}

/**
 * Algorithm 2 for one layer. `parents` [s_l] (values in [0, o_l], o_l = root), `capacity`
 * [o_l + 1], `eligible` [o_l + 1], `dead` [s_l] (this layer's children). Returns new parents.
 */
export function reallocateLayer(
  layer: number,
  parents: Int32Array,
  offset: number,
  capacity: ArrayLike<number>,
  eligible: ArrayLike<number | boolean>,
  dead: ArrayLike<number | boolean>,
  pool: ReallocationPool = "surplus",
): { parents: Int32Array; report: LayerReport } {
  const m = offset + 1;
  if (capacity.length !== m || eligible.length !== m || dead.length !== parents.length) {
    throw new ArborError(
      `reallocate layer ${layer}: capacity [${capacity.length}], eligible [${eligible.length}] ` +
        `must have o_l + 1 = ${m} entries and dead [${dead.length}] must match s_l = ${parents.length}`,
    );
  }
  const s = parents.length;
  const counts = new Uint32Array(m);
  for (const p of parents) counts[p]++;
  const optimal = greedyAllocation(capacity, s, eligible);
  let nEligible = 0;
  for (let p = 0; p < m; p++) if (eligible[p]) nEligible++;

  const { out, child, from, to, nDead } = pool === "all-dead"
    ? placeAllDead(parents, m, counts, optimal, dead)
    : placeSurplus(layer, parents, m, counts, optimal, dead);
  const after = new Uint32Array(m);
  for (const p of out) after[p]++;
  const changes: ParentChange[] = [];
  let distBefore = 0, distAfter = 0;
  for (let p = 0; p < m; p++) {
    distBefore += Math.abs(counts[p] - optimal[p]);
    distAfter += Math.abs(after[p] - optimal[p]);
    if (after[p] !== counts[p]) {
      changes.push({ parent: p, before: counts[p], after: after[p], optimal: optimal[p] });
    }
  }
  return {
    parents: out,
    report: {
      layer,
      children: s,
      dead: nDead,
      moved: child.length,
      eligibleParents: nEligible,
      payoff: {
        before: minPayoff(capacity, counts),
        optimal: minPayoff(capacity, optimal),
        after: minPayoff(capacity, after),
      },
      distanceToOptimal: { before: distBefore / 2, after: distAfter / 2 },
      changes,
      moves: { child, from, to },
    },
  };
}

/** Algorithm 2 over every layer l ≥ 1 of `tree`; returns new parents and per-layer reports. */
export function reallocate(tree: TreeStructure, inputs: ReallocationInputs): ReallocationResult {
  checkFeatureArray(tree, inputs.tokensSinceFired.length);
  const dead = deadMask(inputs.tokensSinceFired, inputs.deadTokens);
  const parents: Int32Array[] = [tree.parents[0].slice()];
  const layers: LayerReport[] = [];
  for (let l = 1; l < tree.layers.length; l++) {
    const o = tree.offsets[l];
    const cap = inputs.capacity[l];
    if (cap === undefined) throw new ArborError(`reallocate: no capacities for layer ${l}`);
    const eligible = eligibleParents(
      o,
      inputs.tokensSinceFired,
      Math.min(inputs.eligibilityTokens ?? PARENT_ELIGIBILITY_TOKENS, inputs.deadTokens),
    );
    const r = reallocateLayer(
      l,
      tree.parents[l],
      o,
      cap,
      eligible,
      dead.subarray(o, o + tree.layers[l]),
      inputs.pool ?? "surplus",
    );
    parents.push(r.parents);
    layers.push(r.report);
  }
  return { parents, layers };
}

/** Root reset (App. C): every dead child of every layer l ≥ 1 moves to the root. */
export function resetDeadToRoot(
  tree: TreeStructure,
  tokensSinceFired: ArrayLike<number>,
  deadTokens: number,
): ReallocationResult {
  checkFeatureArray(tree, tokensSinceFired.length);
  const parents: Int32Array[] = [tree.parents[0].slice()];
  const layers: LayerReport[] = [];
  for (let l = 1; l < tree.layers.length; l++) {
    const o = tree.offsets[l];
    const src = tree.parents[l];
    const out = src.slice();
    const before = childCounts(tree, l);
    const moved: number[] = [];
    let nDead = 0;
    for (let i = 0; i < src.length; i++) {
      if (tokensSinceFired[o + i] < deadTokens) continue;
      nDead++;
      if (src[i] !== o) {
        moved.push(i);
        out[i] = o;
      }
    }
    const after = new Uint32Array(o + 1);
    for (const p of out) after[p]++;
    const changes: ParentChange[] = [];
    for (let p = 0; p <= o; p++) {
      if (after[p] !== before[p]) changes.push({ parent: p, before: before[p], after: after[p] });
    }
    parents.push(out);
    layers.push({
      layer: l,
      children: src.length,
      dead: nDead,
      moved: moved.length,
      changes,
      moves: {
        child: Uint32Array.from(moved),
        from: Int32Array.from(moved, (i) => src[i]),
        to: new Int32Array(moved.length).fill(o),
      },
    });
  }
  return { parents, layers };
}

function checkFeatureArray(tree: TreeStructure, length: number): void {
  if (length !== tree.n) {
    throw new ArborError(
      `reallocate: tokensSinceFired has ${length} entries but the tree has n = ${tree.n} features`,
    );
  }
}

/** The moves of one layer: new parents plus (child, from, to) of every child that changed. */
interface Placement {
  out: Int32Array;
  child: Uint32Array;
  from: Int32Array;
  to: Int32Array;
  nDead: number;
}

/** Surplus pool: over-full parents give up to their excess of dead children; first fit. */
function placeSurplus(
  layer: number,
  parents: Int32Array,
  m: number,
  counts: Uint32Array,
  optimal: Uint32Array,
  dead: ArrayLike<number | boolean>,
): Placement {
  const s = parents.length;
  // Dead children per parent in ascending child order (counting sort over dead children only).
  const deadStart = new Uint32Array(m + 1);
  let nDead = 0;
  for (let i = 0; i < s; i++) {
    if (dead[i]) {
      deadStart[parents[i] + 1]++;
      nDead++;
    }
  }
  for (let p = 0; p < m; p++) deadStart[p + 1] += deadStart[p];
  const deadByParent = new Uint32Array(nDead);
  const fill = deadStart.slice(0, m);
  for (let i = 0; i < s; i++) if (dead[i]) deadByParent[fill[parents[i]]++] = i;

  // Movers: from each over-full parent, up to its excess of dead children.
  const movers: number[] = [];
  for (let p = 0; p < m; p++) {
    if (counts[p] <= optimal[p]) continue;
    const take = Math.min(counts[p] - optimal[p], deadStart[p + 1] - deadStart[p]);
    for (let j = 0; j < take; j++) movers.push(deadByParent[deadStart[p] + j]);
  }
  // First fit into the under-full parents, ascending.
  const out = parents.slice();
  const child = new Uint32Array(movers.length);
  const from = new Int32Array(movers.length);
  const to = new Int32Array(movers.length);
  let next = 0;
  for (let p = 0; p < m && next < movers.length; p++) {
    for (let free = optimal[p] - Math.min(optimal[p], counts[p]); free > 0; free--) {
      if (next === movers.length) break;
      const c = movers[next];
      child[next] = c;
      from[next] = parents[c];
      to[next] = p;
      out[c] = p;
      next++;
    }
  }
  // Σ(k − k*)⁺ = Σ(k* − k)⁺ whenever Σk* = s_l; only an empty k* (no eligible parent) breaks it.
  if (next !== movers.length) {
    throw new ArborError(
      `reallocate layer ${layer}: internal error, ${movers.length - next} unplaced`,
    );
  }
  return { out, child, from, to, nDead };
}

/**
 * All-dead pool (the paper's wording): every dead child, ascending, first fit into the parents'
 * deficits k*_p − alive_p in ascending parent order; leftovers keep their parent.
 */
function placeAllDead(
  parents: Int32Array,
  m: number,
  counts: Uint32Array,
  optimal: Uint32Array,
  dead: ArrayLike<number | boolean>,
): Placement {
  const alive = counts.slice();
  const poolChildren: number[] = [];
  for (let i = 0; i < parents.length; i++) {
    if (dead[i]) {
      poolChildren.push(i);
      alive[parents[i]]--;
    }
  }
  const out = parents.slice();
  const moved: number[] = [];
  let next = 0;
  for (let p = 0; p < m && next < poolChildren.length; p++) {
    for (let free = optimal[p] - Math.min(optimal[p], alive[p]); free > 0; free--) {
      if (next === poolChildren.length) break;
      const c = poolChildren[next++];
      if (parents[c] !== p) {
        out[c] = p;
        moved.push(c);
      }
    }
  }
  moved.sort((a, b) => a - b);
  return {
    out,
    child: Uint32Array.from(moved),
    from: Int32Array.from(moved, (c) => parents[c]),
    to: Int32Array.from(moved, (c) => out[c]),
    nDead: poolChildren.length,
  };
}
