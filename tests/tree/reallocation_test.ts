import assert from "node:assert/strict";
import { greedyAllocation } from "../../lib/tree/allocation.ts";
import { CapacityAccumulator, eligibleParents } from "../../lib/tree/capacity.ts";
import {
  deadMask,
  reallocate,
  reallocateLayer,
  resetDeadToRoot,
} from "../../lib/tree/reallocation.ts";
import { childCounts, initialTree, makeTree } from "../../lib/tree/structure.ts";
import { rng } from "../_util.ts";

const DEAD = 1000;

function intSource(seed: number) {
  const r = rng(seed);
  return { int: (n: number) => Math.min(n - 1, Math.floor(r() * n)) };
}

function counts(parents: Int32Array, m: number): number[] {
  const c = new Array<number>(m).fill(0);
  for (const p of parents) c[p]++;
  return c;
}

Deno.test("planted dead children + skewed capacities: exactly the dead children move, counts reach k*", () => {
  // Layer 1 (8 children) over 4 layer-0 parents + root (index 4).
  // Current: parent 0 has 5 children, parent 1 has 3, others none.
  const parents = Int32Array.from([0, 0, 0, 0, 0, 1, 1, 1]);
  const capacity = [3.1, 3.1, 12, 0, 6]; // skewed to parent 2 and the root
  const eligible = [1, 1, 1, 0, 1];
  const optimal = greedyAllocation(capacity, 8, eligible);
  assert.deepEqual([...optimal], [1, 1, 4, 0, 2]);
  // Excess: parent 0 by 4, parent 1 by 2. Plant exactly that many dead children there, plus
  // nothing else dead (alive children must stay even if their parent is over-full).
  const dead = Uint8Array.from([0, 1, 1, 1, 1, 1, 0, 1]);
  const { parents: out, report } = reallocateLayer(1, parents, 4, capacity, eligible, dead);
  const movedSet = [...report.moves.child].sort((a, b) => a - b);
  assert.deepEqual(movedSet, [1, 2, 3, 4, 5, 7]);
  for (let i = 0; i < 8; i++) {
    if (!dead[i]) assert.equal(out[i], parents[i], `alive child ${i} moved`);
  }
  assert.deepEqual(counts(out, 5), [...optimal]);
  // First fit: movers in donor order (parent 0's 1,2,3,4 then parent 1's 5,7) fill parent 2 then root.
  assert.deepEqual([...out], [0, 2, 2, 2, 2, 4, 1, 4]);
  assert.equal(report.moved, 6);
  assert.equal(report.dead, 6);
  assert.equal(report.eligibleParents, 4);
  assert.deepEqual(report.distanceToOptimal, { before: 6, after: 0 });
  assert.equal(report.payoff!.after, report.payoff!.optimal);
  assert.deepEqual(report.changes, [
    { parent: 0, before: 5, after: 1, optimal: 1 },
    { parent: 1, before: 3, after: 1, optimal: 1 },
    { parent: 2, before: 0, after: 4, optimal: 4 },
    { parent: 4, before: 0, after: 2, optimal: 2 },
  ]);
});

Deno.test("reallocateLayer invariants on random layers (only dead move, as close to k* as dead allow)", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const r = rng(seed);
    const o = 1 + Math.floor(r() * 12);
    const s = 1 + Math.floor(r() * 40);
    const m = o + 1;
    const parents = Int32Array.from({ length: s }, () => Math.floor(r() * m));
    const capacity = Array.from({ length: m }, () => (r() < 0.3 ? 0 : Math.floor(r() * 5) * r()));
    const eligible = Array.from({ length: m }, (_, p) => (p === o || r() < 0.7 ? 1 : 0));
    const dead = Uint8Array.from({ length: s }, () => (r() < 0.5 ? 1 : 0));
    const { parents: out, report } = reallocateLayer(1, parents, o, capacity, eligible, dead);
    const opt = greedyAllocation(capacity, s, eligible);
    const before = counts(parents, m), after = counts(out, m);
    const deadOf = new Array<number>(m).fill(0);
    parents.forEach((p, i) => (deadOf[p] += dead[i]));
    const label = `seed ${seed}`;
    let moved = 0;
    for (let i = 0; i < s; i++) {
      if (out[i] !== parents[i]) {
        moved++;
        assert.equal(dead[i], 1, `${label}: alive child ${i} moved`);
      }
    }
    assert.equal(report.moved, moved, label);
    let lastFilled = -1, firstShort = m;
    for (let p = 0; p < m; p++) {
      if (before[p] > opt[p]) {
        // Donors give exactly min(excess, dead) and never receive.
        assert.equal(after[p], Math.max(opt[p], before[p] - deadOf[p]), `${label}: donor ${p}`);
      } else {
        assert.ok(after[p] >= before[p] && after[p] <= opt[p], `${label}: receiver ${p}`);
        if (after[p] > before[p]) lastFilled = p;
        if (after[p] < opt[p] && firstShort === m) firstShort = p;
      }
    }
    // First fit: no receiver before the last one that got children is left short.
    assert.ok(firstShort >= lastFilled, `${label}: first fit order`);
    // Enough dead children at every donor ⇒ the allocation reaches k* exactly.
    const enough = before.every((b, p) => b <= opt[p] || deadOf[p] >= b - opt[p]);
    if (enough) assert.deepEqual(after, [...opt], `${label}: should reach k*`);
  }
});

Deno.test("reallocate over a whole tree uses accumulated capacities and eligibility", () => {
  const tree = initialTree([6, 10, 30], intSource(5));
  const n = tree.n;
  const r = rng(6);
  // Only features 0, 1, 6, 7 fire; everything else is silent for longer than DEAD tokens.
  const tsf = Float64Array.from({ length: n }, (_, f) => ([0, 1, 6, 7].includes(f) ? 0 : 5 * DEAD));
  const acc = new CapacityAccumulator(tree.layers);
  for (let t = 0; t < 5; t++) {
    const fire = Uint32Array.from(
      { length: n },
      (_, f) => (tsf[f] === 0 ? 1 + Math.floor(r() * 3) : 0),
    );
    acc.accumulate(1 + r(), fire);
  }
  const res = reallocate(tree, {
    capacity: acc.capacity,
    tokensSinceFired: tsf,
    deadTokens: DEAD,
    eligibilityTokens: DEAD,
  });
  assert.equal(res.layers.length, 2);
  assert.deepEqual(res.parents[0], tree.parents[0]);
  for (const rep of res.layers) {
    const l = rep.layer, o = tree.offsets[l];
    const eligible = eligibleParents(o, tsf, DEAD);
    const opt = greedyAllocation(acc.capacity[l], tree.layers[l], eligible);
    const after = counts(res.parents[l], o + 1);
    const dead = deadMask(tsf, DEAD).subarray(o, o + tree.layers[l]);
    const alive = new Array<number>(o + 1).fill(0);
    tree.parents[l].forEach((p, i) => (alive[p] += dead[i] ? 0 : 1));
    if (l === 2) {
      // No layer-2 feature fired, so every child can move and k* is reached exactly.
      assert.deepEqual(after, [...opt], `layer ${l}`);
    } else {
      // Layer 1 has two alive children (features 6, 7) that stay wherever they are: donors keep
      // max(k*, alive), receivers get at most k* (short when the alive ones block their slots).
      const before = counts(tree.parents[l], o + 1);
      for (let p = 0; p <= o; p++) {
        if (before[p] > opt[p]) assert.equal(after[p], Math.max(opt[p], alive[p]), `donor ${p}`);
        else assert.ok(after[p] >= before[p] && after[p] <= opt[p], `receiver ${p}`);
      }
    }
    for (let p = 0; p < o; p++) if (!eligible[p]) assert.equal(after[p], alive[p]);
    for (let i = 0; i < tree.layers[l]; i++) {
      if (!dead[i]) assert.equal(res.parents[l][i], tree.parents[l][i]);
    }
  }
  // The input tree is not modified, and the result is a valid tree.
  makeTree(tree.layers, res.parents);
  assert.throws(
    () =>
      reallocate(tree, {
        capacity: acc.capacity,
        tokensSinceFired: new Float64Array(3),
        deadTokens: DEAD,
      }),
    /tokensSinceFired has 3 entries but the tree has n = 46 features/,
  );
});

Deno.test("root reset moves every dead child of layers ≥ 1 to the root, nothing else", () => {
  const tree = initialTree([4, 8, 16], intSource(8));
  const r = rng(9);
  const tsf = Float64Array.from({ length: tree.n }, () => (r() < 0.5 ? DEAD : DEAD - 1));
  const res = resetDeadToRoot(tree, tsf, DEAD);
  for (let l = 1; l < 3; l++) {
    const o = tree.offsets[l];
    let moved = 0;
    for (let i = 0; i < tree.layers[l]; i++) {
      const isDead = tsf[o + i] >= DEAD;
      assert.equal(res.parents[l][i], isDead ? o : tree.parents[l][i]);
      if (isDead && tree.parents[l][i] !== o) moved++;
    }
    const rep = res.layers[l - 1];
    assert.equal(rep.moved, moved);
    const rootAfter = rep.changes.find((c) => c.parent === o);
    assert.equal(rootAfter?.after ?? childCounts(tree, l)[o], counts(res.parents[l], o + 1)[o]);
  }
  assert.deepEqual(res.parents[0], tree.parents[0]);
});

Deno.test("a dead parent never receives children, even with an eligibility window above deadTokens", () => {
  // Layer 0: feature 0 dead (silent 2·DEAD tokens), feature 1 alive; layer 1: two dead children.
  const tree = makeTree([2, 2], [new Int32Array(2), Int32Array.from([2, 2])]);
  const tsf = [2 * DEAD, 0, 2 * DEAD, 2 * DEAD];
  const capacity = [[0], [100, 1, 1]]; // the dead parent has by far the largest capacity
  const res = reallocate(tree, {
    capacity,
    tokensSinceFired: tsf,
    deadTokens: DEAD,
    eligibilityTokens: 50 * DEAD,
  });
  assert.equal(res.layers[0].eligibleParents, 2);
  assert.deepEqual([...res.parents[1]], [1, 2]);
});
