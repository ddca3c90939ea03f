import assert from "node:assert/strict";
import {
  coactivationReference,
  coactivationStats,
  emptyCoactivation,
} from "../../lib/eval/coactivation.ts";
import { type SparseCodes, UNUSED_SLOT } from "../../lib/eval/sparse_codes.ts";
import { assertClose, rng, testGpu } from "../_util.ts";

/** Random codes: each row holds distinct features, some slots unused or below threshold. */
function randomCodes(rows: number, k: number, n: number, seed: number): SparseCodes {
  const r = rng(seed);
  const idx = new Uint32Array(rows * k).fill(UNUSED_SLOT);
  const val = new Float32Array(rows * k);
  for (let b = 0; b < rows; b++) {
    const used = new Set<number>();
    for (let s = 0; s < k; s++) {
      const u = r();
      if (u < 0.15) continue; // unused slot
      let f = Math.floor(r() * n);
      while (used.has(f)) f = (f + 1) % n;
      used.add(f);
      idx[b * k + s] = f;
      val[b * k + s] = u < 0.25 ? 0.0005 : r() * 3; // some selected-but-not-firing slots
    }
  }
  return { idx, val, rows, k };
}

Deno.test("coactivation kernel matches the TS reference at odd sizes, over several batches", async () => {
  const gpu = await testGpu();
  for (
    const [rows, k, n, m] of [[37, 5, 23, 7], [130, 67, 97, 3], [1, 1, 2, 2], [65, 13, 40, 40]]
  ) {
    const batches = [randomCodes(rows, k, n, rows * 7 + k), randomCodes(rows + 3, k, n, n * 11)];
    const r = rng(m + n);
    const parents = new Uint32Array(m).map(() => Math.floor(r() * n));
    const want = emptyCoactivation(parents, n);
    for (const b of batches) coactivationReference(want, b);
    const got = await coactivationStats(gpu, batches, parents, n);
    const label = `rows=${rows} k=${k} n=${n} m=${m}`;
    assertClose(got.count, want.count, { atol: 0, rtol: 0, label: `${label} count` });
    assertClose(got.prod, want.prod, { atol: 1e-4, rtol: 1e-5, label: `${label} prod` });
    assertClose(got.parentSq, want.parentSq, {
      atol: 1e-4,
      rtol: 1e-5,
      label: `${label} parentSq`,
    });
    if (k > 1) assert.ok(want.count.some((c) => c > 0), `${label}: test data has co-activations`);
  }
});

Deno.test("coactivation reference counts a hand-built case", () => {
  const U = UNUSED_SLOT;
  // Three tokens, k = 3, n = 4. Parent 0 fires on tokens 0 and 1; feature 2 co-fires on both.
  const codes: SparseCodes = {
    idx: new Uint32Array([0, 2, U, 2, 0, 1, 3, 2, U]),
    val: new Float32Array([2, 1, 0, 3, 0.5, 0.0001, 1, 1, 0]),
    rows: 3,
    k: 3,
  };
  const stats = emptyCoactivation(new Uint32Array([0, 2]), 4);
  coactivationReference(stats, codes);
  assert.deepEqual(Array.from(stats.count), [0, 0, 2, 0, 2, 0, 0, 1]);
  assertClose(stats.prod, [0, 0, 2 + 1.5, 0, 2 + 1.5, 0, 0, 1]);
  assertClose(stats.parentSq, [0, 0, 4 + 0.25, 0, 1 + 9, 0, 0, 1]);
});
