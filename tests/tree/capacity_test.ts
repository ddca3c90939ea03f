import assert from "node:assert/strict";
import {
  CapacityAccumulator,
  eligibleParents,
  PARENT_ELIGIBILITY_TOKENS,
} from "../../lib/tree/capacity.ts";
import { layerOffsets } from "../../lib/tree/structure.ts";
import { assertClose, rng } from "../_util.ts";

/** Plain definition: per layer l ≥ 1, loss split equally over fired features < o_l and the root. */
function naiveSplit(
  layers: number[],
  steps: { loss: number; fire: Uint32Array }[],
): Float64Array[] {
  const off = layerOffsets(layers);
  const cap = off.map((o) => new Float64Array(o + 1));
  for (const { loss, fire } of steps) {
    for (let l = 1; l < layers.length; l++) {
      const cands = [];
      for (let p = 0; p < off[l]; p++) if (fire[p] > 0) cands.push(p);
      cands.push(off[l]);
      for (const p of cands) cap[l][p] += loss / cands.length;
    }
  }
  return cap;
}

Deno.test("split rule equals the plain definition over random steps", () => {
  const layers = [5, 7, 11, 3];
  const n = 26;
  const r = rng(11);
  const acc = new CapacityAccumulator(layers);
  const steps = [];
  for (let t = 0; t < 40; t++) {
    const fire = Uint32Array.from({ length: n }, () => (r() < 0.3 ? Math.floor(r() * 9) : 0));
    const loss = r() * 2;
    steps.push({ loss, fire });
    acc.accumulate(loss, fire);
  }
  const want = naiveSplit(layers, steps);
  for (let l = 1; l < layers.length; l++) {
    assertClose(acc.capacity[l], want[l], { atol: 1e-12, rtol: 1e-12, label: `layer ${l}` });
  }
  assert.deepEqual(acc.steps, [0, 40, 40, 40]);
});

Deno.test("split rule: the root always counts; the step's loss is conserved per layer", () => {
  const acc = new CapacityAccumulator([2, 3, 4]);
  acc.accumulate(6, new Uint32Array(9)); // nothing fired: all to the root
  assert.deepEqual([...acc.capacity[1]], [0, 0, 6]);
  assert.deepEqual([...acc.capacity[2]], [0, 0, 0, 0, 0, 6]);
  acc.reset();
  // Feature 1 (layer 0) and 3 (layer 1) fire; feature 6 (layer 2) firing does not matter.
  acc.accumulate(6, Uint32Array.from([0, 5, 0, 1, 0, 0, 2, 0, 0]));
  assert.deepEqual([...acc.capacity[1]], [0, 3, 3]);
  assert.deepEqual([...acc.capacity[2]], [0, 2, 0, 2, 0, 2]);
});

Deno.test("per-instance rule (paper wording): loss × tokens fired, root × batch tokens", () => {
  const acc = new CapacityAccumulator([2, 3, 4], "per-instance");
  acc.accumulate(0.5, Uint32Array.from([0, 5, 0, 1, 0, 0, 2, 0, 0]), 8);
  assert.deepEqual([...acc.capacity[1]], [0, 2.5, 4]);
  assert.deepEqual([...acc.capacity[2]], [0, 2.5, 0, 0.5, 0, 4]);
  assert.throws(() => acc.accumulate(1, new Uint32Array(9)), /needs the batch's token count/);
});

Deno.test("reset, state round trip, and input errors", () => {
  const acc = new CapacityAccumulator([2, 3, 4]);
  acc.accumulate(3, Uint32Array.from([1, 1, 1, 0, 0, 0, 0, 0, 0]));
  const state = acc.toState();
  assert.deepEqual(Object.keys(state), ["capacity_1", "capacity_2"]);
  const b = new CapacityAccumulator([2, 3, 4]);
  b.loadState(state);
  assert.deepEqual(b.capacity, acc.capacity);
  acc.reset(1);
  assert.deepEqual([...acc.capacity[1]], [0, 0, 0]);
  assert.ok(acc.capacity[2][0] > 0);
  assert.deepEqual(acc.steps, [0, 0, 1]);
  assert.throws(
    () => b.loadState({ capacity_2: new Float64Array(3) }, "run/trainer_state.json"),
    /run\/trainer_state.json: capacity_2 has 3 entries, expected 6/,
  );
  assert.throws(
    () => acc.accumulate(1, new Uint32Array(8)),
    /fire counts have 8 entries but the tree has 9/,
  );
  assert.throws(() => acc.accumulate(NaN, new Uint32Array(9)), /step loss NaN/);
});

Deno.test("eligibleParents: fired within the window (App. G: 50,000 tokens); root always", () => {
  assert.equal(PARENT_ELIGIBILITY_TOKENS, 50_000);
  const tsf = Uint32Array.from([0, 49_999, 50_000, 1e7, 0]);
  assert.deepEqual([...eligibleParents(4, tsf)], [1, 1, 0, 0, 1]);
  assert.deepEqual([...eligibleParents(4, tsf, 10)], [1, 0, 0, 0, 1]);
  assert.deepEqual([...eligibleParents(0, tsf)], [1]);
});
