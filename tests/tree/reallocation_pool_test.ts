import assert from "node:assert/strict";
import { parseCommand, UsageError } from "../../cli/args.ts";
import { ALLOCATION_FLAGS, allocationOptionsFromFlags } from "../../cli/reallocate.ts";
import { greedyAllocation } from "../../lib/tree/allocation.ts";
import { reallocate, reallocateLayer } from "../../lib/tree/reallocation.ts";
import { makeTree } from "../../lib/tree/structure.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { TreeAllocator } from "../../lib/tree/trainer_hook.ts";
import { rng } from "../_util.ts";

function counts(parents: ArrayLike<number>, m: number): number[] {
  const c = new Array<number>(m).fill(0);
  for (let i = 0; i < parents.length; i++) c[parents[i]]++;
  return c;
}

Deno.test("all-dead pool: dead children of parents at k* are re-placed first fit (surplus moves none)", () => {
  // Three layer-0 parents + root (3); equal capacities, so k* = 1 each.
  const capacity = [1, 1, 1, 1];
  const eligible = [1, 1, 1, 1];
  assert.deepEqual([...greedyAllocation(capacity, 4, eligible)], [1, 1, 1, 1]);
  // Every parent is at k*; children 0 (under 1) and 1 (under 0) are dead.
  const parents = Int32Array.from([1, 0, 2, 3]);
  const dead = Uint8Array.from([1, 1, 0, 0]);
  const surplus = reallocateLayer(1, parents, 3, capacity, eligible, dead, "surplus");
  assert.deepEqual([...surplus.parents], [1, 0, 2, 3]);
  assert.equal(surplus.report.moved, 0);
  // Pool [0, 1], deficits (k* − alive) [1, 1, 0, 0]: child 0 → parent 0, child 1 → parent 1.
  const all = reallocateLayer(1, parents, 3, capacity, eligible, dead, "all-dead");
  assert.deepEqual([...all.parents], [0, 1, 2, 3]);
  assert.equal(all.report.moved, 2);
  assert.equal(all.report.dead, 2);
  assert.deepEqual([...all.report.moves.child], [0, 1]);
  assert.deepEqual([...all.report.moves.from], [1, 0]);
  assert.deepEqual([...all.report.moves.to], [0, 1]);
  assert.deepEqual(all.report.changes, []); // a swap: counts are unchanged
});

Deno.test("all-dead pool: skewed capacities, exact first-fit parents, counts stay at k*", () => {
  // Four layer-0 parents + root (4); k* = [1, 1, 4, 0, 2] (parent 3 ineligible).
  const capacity = [3.1, 3.1, 12, 0, 6];
  const eligible = [1, 1, 1, 0, 1];
  assert.deepEqual([...greedyAllocation(capacity, 8, eligible)], [1, 1, 4, 0, 2]);
  // Already at k*; dead: child 0 (root), child 1 (parent 2), child 7 (root).
  const parents = Int32Array.from([4, 2, 2, 2, 0, 1, 2, 4]);
  const dead = Uint8Array.from([1, 1, 0, 0, 0, 0, 0, 1]);
  const surplus = reallocateLayer(1, parents, 4, capacity, eligible, dead);
  assert.deepEqual([...surplus.parents], [...parents], "surplus is the default and moves nothing");
  // Alive: [1, 1, 3, 0, 0] → deficits [0, 0, 1, 0, 2]; pool [0, 1, 7]:
  // 0 → parent 2 (moves), 1 → root (moves), 7 → root (its own parent: stays).
  const all = reallocateLayer(1, parents, 4, capacity, eligible, dead, "all-dead");
  assert.deepEqual([...all.parents], [2, 4, 2, 2, 0, 1, 2, 4]);
  assert.deepEqual([...all.report.moves.child], [0, 1]);
  assert.equal(all.report.moved, 2);
  assert.deepEqual(counts(all.parents, 5), [1, 1, 4, 0, 2]);
  assert.deepEqual(all.report.distanceToOptimal, { before: 0, after: 0 });
});

Deno.test("all-dead pool: over-full parents and short receivers are filled from every dead child", () => {
  // k* = [1, 1, 4, 0, 2] as above. Parent 0 holds 4 children (3 alive, 1 dead), parent 1 holds
  // 2 dead, parent 2 holds 2 (1 dead), root none.
  const capacity = [3.1, 3.1, 12, 0, 6];
  const eligible = [1, 1, 1, 0, 1];
  const parents = Int32Array.from([0, 0, 0, 0, 1, 1, 2, 2]);
  const dead = Uint8Array.from([0, 1, 0, 0, 1, 1, 1, 0]);
  // Surplus: parent 0 gives child 1 (its only dead), parent 1 gives child 4 → parent 2's deficit.
  const surplus = reallocateLayer(1, parents, 4, capacity, eligible, dead, "surplus");
  assert.deepEqual([...surplus.parents], [0, 2, 0, 0, 2, 1, 2, 2]);
  // All-dead: alive [3, 0, 1, 0, 0] → deficits [0, 1, 3, 0, 2]; pool [1, 4, 5, 6]:
  // 1 → parent 1, 4 → parent 2, 5 → parent 2, 6 → parent 2 (own). Root stays short: the pool is
  // empty (parent 0's two alive children over k* cannot move).
  const all = reallocateLayer(1, parents, 4, capacity, eligible, dead, "all-dead");
  assert.deepEqual([...all.parents], [0, 1, 0, 0, 2, 2, 2, 2]);
  assert.deepEqual([...all.report.moves.child], [1, 4, 5]);
  assert.deepEqual([...all.report.moves.from], [0, 1, 1]);
  assert.deepEqual([...all.report.moves.to], [1, 2, 2]);
  assert.deepEqual(counts(all.parents, 5), [3, 1, 4, 0, 0]);
});

Deno.test("all-dead pool invariants on random layers: only dead move, deficits filled in parent order", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const r = rng(seed);
    const o = 1 + Math.floor(r() * 12);
    const s = 1 + Math.floor(r() * 40);
    const m = o + 1;
    const parents = Int32Array.from({ length: s }, () => Math.floor(r() * m));
    const capacity = Array.from({ length: m }, () => (r() < 0.3 ? 0 : Math.floor(r() * 5) * r()));
    const eligible = Array.from({ length: m }, (_, p) => (p === o || r() < 0.7 ? 1 : 0));
    const dead = Uint8Array.from({ length: s }, () => (r() < 0.5 ? 1 : 0));
    const { parents: out, report } = reallocateLayer(
      1,
      parents,
      o,
      capacity,
      eligible,
      dead,
      "all-dead",
    );
    const label = `seed ${seed}`;
    const opt = greedyAllocation(capacity, s, eligible);
    const alive = new Array<number>(m).fill(0);
    parents.forEach((p, i) => (alive[p] += 1 - dead[i]));
    let moved = 0;
    for (let i = 0; i < s; i++) {
      if (out[i] !== parents[i]) {
        moved++;
        assert.equal(dead[i], 1, `${label}: alive child ${i} moved`);
      }
    }
    assert.equal(report.moved, moved, label);
    // Non-dead + assigned = max(k*, alive) for a prefix of parents; once the pool runs out, the
    // remaining parents keep only their alive children. Total shortfall = alive excess over k*.
    const after = counts(out, m);
    let shortfall = 0, excess = 0, ranOut = false;
    for (let p = 0; p < m; p++) {
      const want = Math.max(opt[p], alive[p]);
      excess += Math.max(0, alive[p] - opt[p]);
      if (ranOut) {
        assert.equal(
          after[p],
          alive[p],
          `${label}: parent ${p} got children after the pool ran out`,
        );
      } else if (after[p] < want) {
        ranOut = true;
      }
      if (!ranOut) assert.equal(after[p], want, `${label}: parent ${p}`);
      assert.ok(after[p] <= want && after[p] >= alive[p], `${label}: parent ${p} bounds`);
      shortfall += want - after[p];
    }
    assert.equal(shortfall, excess, `${label}: every dead child placed`);
    if (excess === 0) assert.deepEqual(after, [...opt], `${label}: counts reach k*`);
  }
});

Deno.test("reallocate threads the pool option per layer; default stays surplus", () => {
  // Layers [2, 4, 4]: layer 1 over 2 parents + root (2), layer 2 over 6 + root (6).
  const tree = makeTree([2, 4, 4], [
    Int32Array.from([0, 0]),
    Int32Array.from([1, 0, 1, 2]),
    Int32Array.from([6, 2, 3, 4]),
  ]);
  const DEAD = 100;
  // Dead: layer-1 children 2 and 3 (features 4, 5). Everything else fired recently.
  const tokensSinceFired = [0, 0, 0, 0, DEAD, DEAD, 0, 0, 0, 0];
  const capacity = [[], [1, 1, 1], [0, 0, 1, 1, 0, 0, 1]];
  const inputs = { capacity, tokensSinceFired, deadTokens: DEAD, eligibilityTokens: 10 };
  const surplus = reallocate(tree, inputs);
  const all = reallocate(tree, { ...inputs, pool: "all-dead" });
  // Layer 1: k* from equal capacities over 3 parents for 4 children.
  const k1 = greedyAllocation([1, 1, 1], 4, [1, 1, 1]);
  assert.deepEqual(counts(all.parents[1], 3), [...k1]);
  assert.deepEqual([...k1], [2, 1, 1]);
  // Alive [1, 1, 0] → deficits [1, 0, 1]; pool [2, 3]: 2 → parent 0, 3 → root (own).
  assert.deepEqual([...all.parents[1]], [1, 0, 0, 2]);
  assert.deepEqual([...surplus.parents[1]], [
    ...reallocate(tree, { ...inputs, pool: "surplus" }).parents[1],
  ]);
  for (const r of [surplus, all]) {
    for (let i = 0; i < 4; i++) {
      if (i < 2) assert.equal(r.parents[1][i], tree.parents[1][i], "alive child moved");
    }
    assert.deepEqual([...r.parents[2]], [...tree.parents[2]], "layer 2 has no dead children");
  }
});

Deno.test("--realloc-pool: default surplus, all-dead accepted, bad value named", () => {
  const trainSpec = { name: "train", summary: "", usage: "", flags: ALLOCATION_FLAGS };
  const opts = (argv: string[]) =>
    allocationOptionsFromFlags(parseCommand(trainSpec, argv).flags, 1000, 1024);
  assert.equal(opts([]).pool, "surplus");
  assert.equal(opts(["--realloc-pool", "all-dead"]).pool, "all-dead");
  assert.throws(
    () => opts(["--realloc-pool", "dead"]),
    (e: Error) =>
      e instanceof UsageError &&
      e.message === 'train: --realloc-pool must be surplus or all-dead, got "dead"',
  );
});

Deno.test("TreeAllocator passes its pool option to Algorithm 2", () => {
  const config = makeConfig({
    arch: "tree",
    dIn: 4,
    layers: [3, 4],
    kPerLayer: [1, 1],
    deadTokens: 100,
  });
  // Every layer-0 parent and the root hold one child; children 0 (under 1) and 1 (under 0) are
  // dead. No capacity accumulated: k* spreads 4 children evenly, one per parent.
  const state = {
    parents: [Int32Array.from([0, 0, 0]), Int32Array.from([1, 0, 2, 3])],
    tokensSinceFired: [0, 0, 0, 100, 100, 0, 0],
  };
  const run = (pool?: "surplus" | "all-dead") =>
    new TreeAllocator(config, { totalSteps: 100, log: null, eligibilityTokens: 10, pool })
      .apply("reallocate", state, 10).result.parents[1];
  assert.deepEqual([...run()], [1, 0, 2, 3]);
  assert.deepEqual([...run("all-dead")], [0, 1, 2, 3]);
});
