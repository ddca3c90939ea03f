import assert from "node:assert/strict";
import {
  childCounts,
  childLists,
  fromCheckpointParents,
  initialParents,
  initialTree,
  layerOf,
  layerOffsets,
  makeTree,
  toCheckpointParents,
  validateLayerConfig,
} from "../../lib/tree/structure.ts";
import { ArborError, DataError } from "../../lib/errors.ts";
import { rng } from "../_util.ts";

function intSource(seed: number) {
  const r = rng(seed);
  return { int: (n: number) => Math.min(n - 1, Math.floor(r() * n)) };
}

Deno.test("layerOffsets and layerOf follow the global numbering", () => {
  const off = layerOffsets([3, 4, 5]);
  assert.deepEqual(off, [0, 3, 7]);
  assert.deepEqual([0, 2, 3, 6, 7, 11].map((f) => layerOf(off, f)), [0, 0, 1, 1, 2, 2]);
});

Deno.test("initialParents: layer 0 all root, others uniform over earlier features and root", () => {
  const layers = [4, 6, 20000];
  const parents = initialParents(layers, intSource(1));
  assert.deepEqual([...parents[0]], [0, 0, 0, 0]);
  assert.ok(parents[1].every((p) => p >= 0 && p <= 4));
  // Layer 2 has 11 choices (10 earlier features + root): each should get ~1/11 of 20000.
  const counts = new Array(11).fill(0);
  for (const p of parents[2]) counts[p]++;
  for (const c of counts) assert.ok(Math.abs(c - 20000 / 11) < 200, `counts ${counts}`);
  // Seeded: same seed, same tree; other seed, other tree.
  assert.deepEqual(initialParents(layers, intSource(1)), parents);
  assert.notDeepEqual(initialParents(layers, intSource(2))[2], parents[2]);
});

Deno.test("childCounts and childLists agree with the parent arrays", () => {
  const tree = initialTree([5, 7, 30], intSource(4));
  for (const l of [1, 2]) {
    const counts = childCounts(tree, l);
    const { start, children } = childLists(tree, l);
    assert.equal(counts.length, tree.offsets[l] + 1);
    assert.equal(counts.reduce((a, b) => a + b, 0), tree.layers[l]);
    for (let p = 0; p < counts.length; p++) {
      const kids = [...children.subarray(start[p], start[p + 1])];
      assert.equal(kids.length, counts[p]);
      assert.deepEqual(kids, [...kids].sort((a, b) => a - b));
      for (const c of kids) assert.equal(tree.parents[l][c], p);
    }
  }
});

Deno.test("checkpoint parents round-trip (int32 and the reference's int64)", () => {
  const tree = initialTree([3, 4, 6], intSource(9));
  const ck = toCheckpointParents(tree);
  assert.deepEqual(Object.keys(ck), ["parent_index_1", "parent_index_2"]);
  assert.deepEqual(fromCheckpointParents(tree.layers, ck), tree);
  const big = {
    parent_index_1: BigInt64Array.from(ck.parent_index_1, BigInt),
    parent_index_2: BigInt64Array.from(ck.parent_index_2, BigInt),
  };
  assert.deepEqual(fromCheckpointParents(tree.layers, big).parents, tree.parents);
});

Deno.test("validateTree: clear errors for bad parents, k_l > s_l, sizes not summing to n", () => {
  const layers = [3, 4, 6]; // offsets 0, 3, 7; n = 13
  const ok =
    () => [new Int32Array(3), Int32Array.from([0, 1, 2, 3]), Int32Array.from([0, 3, 6, 7, 7, 1])];
  makeTree(layers, ok(), { kPerLayer: [2, 1, 1], n: 13 });
  const bad = (l: number, i: number, v: number) => {
    const p = ok();
    p[l][i] = v;
    return p;
  };
  const src = { source: "run/sae.safetensors" };
  assert.throws(
    () => makeTree(layers, bad(2, 4, 9), src),
    (e: Error) =>
      e instanceof DataError &&
      e.message ===
        "run/sae.safetensors: parent_index_2[4] = 9 (child feature 11, layer 2) points at its own layer; " +
          "a parent must be an earlier feature (0..6) or the root (7)",
  );
  assert.throws(
    () => makeTree([3, 4, 6, 2], [...ok(), Int32Array.from([15, 0])]),
    /parent_index_3\[0\] = 15 .* out of range/,
  );
  assert.throws(
    () => makeTree(layers, bad(1, 0, 8)),
    /parent_index_1\[0\] = 8 .*points at a later layer \(layer 2\); a parent must be an earlier feature \(0\.\.2\) or the root \(3\)/,
  );
  assert.throws(() => makeTree(layers, bad(1, 2, 99)), /parent_index_1\[2\] = 99 .*out of range/);
  assert.throws(() => makeTree(layers, bad(2, 0, -1)), /parent_index_2\[0\] = -1 .*out of range/);
  assert.throws(() => makeTree(layers, bad(0, 1, 1)), /layer 0 hangs from the root only/);
  assert.throws(
    () => makeTree(layers, ok(), { kPerLayer: [2, 5, 1] }),
    (e: Error) =>
      e instanceof ArborError &&
      /k per layer\[1\] = 5 exceeds the layer's size s_1 = 4; lower k_1 or enlarge layer 1/.test(
        e.message,
      ),
  );
  assert.throws(
    () => makeTree(layers, ok(), { n: 24 }),
    /layer sizes \[3,4,6\] sum to 13 but the dictionary has n = 24 features/,
  );
  assert.throws(() => makeTree(layers, ok().slice(0, 2)), /3 layers but 2 parent arrays/);
  assert.throws(
    () => makeTree(layers, [ok()[0], new Int32Array(2), ok()[2]]),
    /parent_index_1 has 2 entries but layer 1 has 4 features/,
  );
  assert.throws(
    () => validateLayerConfig([3, 0]),
    /layers\[1\] = 0: every layer size must be a positive integer/,
  );
  assert.throws(
    () => validateLayerConfig([3, 4], { kPerLayer: [1] }),
    /has 1 entries but layers has 2 layers/,
  );
  // Checkpoint values are checked before conversion (an int64 2^32 + 1 must not wrap to 1).
  assert.throws(
    () =>
      fromCheckpointParents(layers, {
        parent_index_1: BigInt64Array.from([0n, 4294967297n, 0n, 0n]),
        parent_index_2: ok()[2],
      }, src),
    /run\/sae.safetensors: parent_index_1\[1\] = 4294967297 .*out of range/,
  );
  assert.throws(
    () => fromCheckpointParents(layers, { parent_index_1: ok()[1] }, src),
    /run\/sae.safetensors: missing tensor parent_index_2/,
  );
});
