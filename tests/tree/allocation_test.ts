import assert from "node:assert/strict";
import { greedyAllocation, minPayoff } from "../../lib/tree/allocation.ts";
import { MaxHeap } from "../../lib/tree/max_heap.ts";
import { rng } from "../_util.ts";

/** Best min C_p/k_p over every quota vector (eligible parents only) summing to s. */
function bruteForce(cap: number[], s: number, eligible: boolean[]): number {
  const ids = cap.map((_, p) => p).filter((p) => eligible[p]);
  let best = -Infinity;
  const k = new Array<number>(cap.length).fill(0);
  const rec = (j: number, left: number) => {
    if (j === ids.length - 1) {
      k[ids[j]] = left;
      best = Math.max(best, minPayoff(cap, k));
      k[ids[j]] = 0;
      return;
    }
    for (let v = 0; v <= left; v++) {
      k[ids[j]] = v;
      rec(j + 1, left - v);
    }
    k[ids[j]] = 0;
  };
  rec(0, s);
  return best;
}

Deno.test("MaxHeap pops in (primary desc, secondary asc, id asc) order", () => {
  const r = rng(7);
  const items: [number, number, number][] = [];
  const h = new MaxHeap(200);
  for (let i = 0; i < 200; i++) {
    const it: [number, number, number] = [Math.floor(r() * 5), Math.floor(r() * 3), i];
    items.push(it);
    if (i % 2) h.push(...it);
    else h.pushUnordered(...it);
    if (i % 2 === 0) h.heapify();
  }
  items.sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]);
  const got: number[] = [];
  while (h.size) got.push(h.pop());
  assert.deepEqual(got, items.map((it) => it[2]));
});

Deno.test("greedyAllocation equals the brute-force optimum of min C_p/k_p (zeros, ties, ineligible)", () => {
  let cases = 0;
  for (let seed = 1; seed <= 25; seed++) {
    const r = rng(seed);
    for (let t = 0; t < 12; t++) {
      const m = 1 + Math.floor(r() * 5);
      const s = Math.floor(r() * 7);
      // Small integer capacities make ties and zeros common; some real-valued ones too.
      const cap = Array.from(
        { length: m },
        () => seed % 3 === 0 ? r() * 10 : [0, 1, 2, 2, 3, 4, 6][Math.floor(r() * 7)],
      );
      const eligible = Array.from({ length: m }, () => r() < 0.75);
      if (!eligible.some(Boolean)) eligible[Math.floor(r() * m)] = true;
      const q = greedyAllocation(cap, s, eligible);
      const label = `seed ${seed} case ${t}: C=[${cap}] s=${s} eligible=[${eligible}] k=[${q}]`;
      assert.equal(q.reduce((a, b) => a + b, 0), s, label);
      eligible.forEach((e, p) => {
        if (!e) assert.equal(q[p], 0, `${label}: ineligible parent ${p} got children`);
      });
      assert.equal(minPayoff(cap, q), bruteForce(cap, s, eligible), label);
      cases++;
    }
  }
  assert.equal(cases, 300);
});

Deno.test("greedyAllocation breaks ties by fewer children, then lower index", () => {
  // Equal capacities: round-robin from the lowest index.
  assert.deepEqual([...greedyAllocation([5, 5, 5], 4)], [2, 1, 1]);
  // All eligible capacities zero: spread uniformly (any allocation scores 0).
  assert.deepEqual([...greedyAllocation([0, 0, 0, 9], 5, [1, 1, 1, 0])], [2, 2, 1, 0]);
  // A zero-capacity parent never gets a child while a positive one is eligible.
  assert.deepEqual([...greedyAllocation([0, 3, 1], 6)], [0, 5, 1]);
  // Payoff tie 2/2 == 1/1: the parent with fewer children goes first.
  assert.deepEqual([...greedyAllocation([2, 1], 2)], [1, 1]);
  assert.deepEqual([...greedyAllocation([2, 1], 3)], [2, 1]);
});

Deno.test("greedyAllocation: no eligible parent gives all zeros; bad capacity is named", () => {
  assert.deepEqual([...greedyAllocation([1, 2], 3, [0, 0])], [0, 0]);
  assert.throws(() => greedyAllocation([1, NaN], 3), /capacity\[1\] = NaN.*diverged/);
  assert.throws(() => greedyAllocation([1, -2], 3), /capacity\[1\] = -2/);
  assert.throws(
    () => greedyAllocation([1, 2], 3, [1]),
    /eligible has 1 entries but capacity has 2/,
  );
});

Deno.test("greedyAllocation: 18,432 children over 6,145 parents well under the issue's 1 s", () => {
  const r = rng(3);
  const m = 6145, s = 18432;
  const cap = Float64Array.from({ length: m }, () => (r() < 0.1 ? 0 : r() * 100));
  const eligible = Uint8Array.from({ length: m }, () => (r() < 0.9 ? 1 : 0));
  eligible[m - 1] = 1;
  const t0 = performance.now();
  const q = greedyAllocation(cap, s, eligible);
  const ms = performance.now() - t0;
  assert.equal(q.reduce((a, b) => a + b, 0), s);
  // Theorem 4.1: τ* = min payoff admits Σ⌊C_p/τ*⌋ ≥ s, and no parent could take one more
  // child without going below τ* (C_p/(k_p+1) ≤ τ*).
  const tau = minPayoff(cap, q);
  let total = 0;
  for (let p = 0; p < m; p++) {
    if (eligible[p]) {
      total += Math.floor(cap[p] / tau);
      assert.ok(cap[p] / (q[p] + 1) <= tau, `parent ${p} could take another child`);
    }
  }
  assert.ok(total >= s);
  // Generous bound (shared 2-core machine); measured ~10-20 ms here.
  assert.ok(ms < 5000, `greedyAllocation took ${ms.toFixed(0)} ms`);
});
