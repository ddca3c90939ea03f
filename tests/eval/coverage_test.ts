import assert from "node:assert/strict";
import { coactivationReference, emptyCoactivation } from "../../lib/eval/coactivation.ts";
import {
  coverageScore,
  MCS_VARIANTS,
  mcsScore,
  PAPER_MCS,
  topChildren,
} from "../../lib/eval/coverage.ts";
import { featureStats, type SparseCodes, UNUSED_SLOT } from "../../lib/eval/sparse_codes.ts";
import { assertClose } from "../_util.ts";

const U = UNUSED_SLOT;
// Four tokens, n = 4. Feature 0 = parent (fires on tokens 0, 1, 2 with 2, 4, 1).
// Feature 1 fires on tokens 0, 1 (values 1, 1): fully covered.
// Feature 2 fires on tokens 1, 3 (values 3, 2): half covered.
// Feature 3 never fires.
const codes: SparseCodes = {
  idx: new Uint32Array([0, 1, U, 0, 1, 2, 0, U, U, 2, U, U]),
  val: new Float32Array([2, 1, 0, 4, 1, 3, 1, 0, 0, 2, 0, 0]),
  rows: 4,
  k: 3,
};

function setup() {
  const fs = featureStats([codes], 4);
  const co = emptyCoactivation(new Uint32Array([0]), 4);
  coactivationReference(co, codes);
  return { fs, co };
}

Deno.test("S_cov matches hand-computed coverage", () => {
  const { fs, co } = setup();
  assertClose([0, 1, 2, 3].map((c) => coverageScore(co, fs, 0, c)), [0, 1, 0.5, 0]);
});

Deno.test("MCS in the four variants of App. I matches hand-computed values", () => {
  const { fs, co } = setup();
  // Child 1: tokens 0, 1 — a_p = (2, 4), a_c = (1, 1).
  // continuous: (2+4) / (sqrt(2)·sqrt(20)) = 6/sqrt(40); binary: sqrt(2/2) = 1.
  // scaled: × min(max_c = 1, max_p = 4) / 4 = 1/4.
  const c1 = 6 / Math.sqrt(40);
  // Child 2: its tokens 1, 3 — a_p = (4, 0), a_c = (3, 2): 12 / (sqrt(13)·4); binary sqrt(1/2).
  // scaled: min(3, 4)/4 = 3/4.
  const c2 = 12 / (Math.sqrt(13) * 4);
  const got = (name: string, c: number) => mcsScore(co, fs, 0, c, MCS_VARIANTS[name]);
  assertClose(
    [got("binary", 1), got("binary_scaled", 1), got("continuous", 1), got("continuous_scaled", 1)],
    [1, 1 / 4, c1, c1 / 4],
    { label: "child 1" },
  );
  assertClose(
    [got("binary", 2), got("binary_scaled", 2), got("continuous", 2), got("continuous_scaled", 2)],
    [Math.SQRT1_2, Math.SQRT1_2 * 0.75, c2, c2 * 0.75],
    { label: "child 2" },
  );
  assert.equal(got("binary", 3), 0);
  assert.deepEqual(MCS_VARIANTS.binary, PAPER_MCS);
});

Deno.test("topChildren ranks by MCS, skips the parent, rare children and zero scores", () => {
  const { fs, co } = setup();
  assert.deepEqual(topChildren(co, fs, 0, { top: 5 }).map((s) => s.child), [1, 2]);
  assert.deepEqual(topChildren(co, fs, 0, { top: 1 }).map((s) => s.child), [1]);
  // Continuous: child 1 scores 0.949, child 2 0.832.
  assert.deepEqual(
    topChildren(co, fs, 0, { top: 5, variant: MCS_VARIANTS.continuous }).map((s) => s.child),
    [1, 2],
  );
  assert.deepEqual(topChildren(co, fs, 0, { top: 5, minChildCount: 3 }), []);
});
