import assert from "node:assert/strict";
import { CooccurrenceAccumulator } from "../../lib/eval/cooccurrence.ts";
import { type SparseCodes, UNUSED_SLOT } from "../../lib/eval/sparse_codes.ts";
import { assertClose } from "../_util.ts";

const U = UNUSED_SLOT;

Deno.test("sibling co-occurrence is the mean IoU over sibling pairs, averaged over layers", () => {
  // layers [2, 3, 2]: features 0,1 | 2,3,4 | 5,6. Layer 1: 2,3 children of 0, 4 of root (2).
  // Layer 2: 5, 6 children of 2. Never paired: 4 (root child), and 2 with 5 (different layers).
  const acc = new CooccurrenceAccumulator([2, 3, 2], [
    new Int32Array([0, 0]),
    new Int32Array([0, 0, 2]),
    new Int32Array([2, 2]),
  ]);
  // Tokens (fired sets): {0,2,3,5}, {0,2,5,6}, {0,3}, {4}, {2,5} (6 below threshold).
  const codes: SparseCodes = {
    idx: new Uint32Array([0, 2, 3, 5, 0, 2, 5, 6, 0, 3, U, U, 4, U, U, U, 2, 5, 6, U]),
    val: new Float32Array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0.0001, 0]),
    rows: 5,
    k: 4,
  };
  acc.add(codes);
  const r = acc.result();
  // Layer 1, pair (2,3): T_2 = {0,1,4}, T_3 = {0,2}: IoU = 1/4.
  // Layer 2, pair (5,6): T_5 = {0,1,4}, T_6 = {1}: IoU = 1/3.
  assert.deepEqual(r.pairsPerLayer, [0, 1, 1]);
  assert.equal(r.perLayer[0], null);
  assertClose([r.perLayer[1]!, r.perLayer[2]!, r.rate], [0.25, 1 / 3, (0.25 + 1 / 3) / 2]);
});

Deno.test("sibling co-occurrence skips pairs that never fire and streams over batches", () => {
  // One layer of children: 2, 3, 4, 5 all children of 0; 4 and 5 never fire.
  const acc = new CooccurrenceAccumulator([2, 4], [
    new Int32Array([0, 0]),
    new Int32Array([0, 0, 0, 0]),
  ]);
  const row = (a: number, b: number): SparseCodes => ({
    idx: new Uint32Array([a, b]),
    val: new Float32Array([1, 1]),
    rows: 1,
    k: 2,
  });
  acc.add(row(2, 3));
  acc.add(row(2, 0));
  // T_2 = {0, 1}, T_3 = {0}: (2,3) = 1/2; (2,4), (2,5), (3,4), (3,5) = 0; (4,5) has an
  // empty union and is skipped → 5 pairs, mean 1/10.
  const r = acc.result();
  assert.deepEqual(r.pairsPerLayer, [0, 5]);
  assertClose([r.rate], [1 / 10]);
});
