/** The MP-SAE reference (lib/sae/mp/reference.ts): pursuit rules and the backward pass. */
import assert from "node:assert/strict";
import { assertClose, randn } from "../_util.ts";
import {
  f32Bits,
  mpBackward,
  mpLoss,
  mpPursuit,
  mpResidualFixed,
} from "../../lib/sae/mp/reference.ts";
import { batchVariance } from "../../lib/sae/reference/ops.ts";

function unitRows(w: Float32Array, n: number, d: number): Float32Array {
  for (let i = 0; i < n; i++) {
    const row = w.subarray(i * d, (i + 1) * d);
    const norm = Math.hypot(...row);
    row.forEach((v, j) => (row[j] = v / norm));
  }
  return w;
}

Deno.test("mpPursuit: greedy picks with a_t = <atom, residual>, residual = xs − Σ a_t·atom", () => {
  const B = 4, d = 9, n = 12, k = 5;
  const decW = unitRows(randn(n * d, 1), n, d);
  const xs = randn(B * d, 2);
  const s = mpPursuit(xs, decW, B, d, n, k);
  for (let b = 0; b < B; b++) {
    const r = Array.from(xs.subarray(b * d, (b + 1) * d));
    for (let t = 0; t < s.info[b * 4 + 2]; t++) {
      const scores = Array.from({ length: n }, (_, i) => {
        let c = 0;
        for (let j = 0; j < d; j++) c += decW[i * d + j] * r[j];
        return c;
      });
      const best = scores.indexOf(Math.max(...scores));
      assert.equal(s.pickIdx[b * k + t], best, `row ${b} pick ${t}`);
      assertClose([s.pickVal[b * k + t]], [scores[best]], { atol: 1e-5 });
      for (let j = 0; j < d; j++) r[j] -= scores[best] * decW[best * d + j];
    }
    assertClose(s.residual.subarray(b * d, (b + 1) * d), r, { atol: 1e-5, label: "residual" });
    // slots: distinct atoms whose values sum the picks' coefficients
    const slots = s.info[b * 4];
    const sum = new Map<number, number>();
    for (let t = 0; t < s.info[b * 4 + 2]; t++) {
      const i = s.pickIdx[b * k + t];
      sum.set(i, (sum.get(i) ?? 0) + s.pickVal[b * k + t]);
    }
    assert.equal(slots, sum.size);
    for (let t = 0; t < slots; t++) {
      assertClose([s.val[b * k + t]], [sum.get(s.idx[b * k + t])!], { atol: 1e-5 });
    }
    for (let t = slots; t < k; t++) assert.equal(s.idx[b * k + t], 0xffffffff);
  }
});

Deno.test("mpPursuit stops early: residual under eps, no positive atom, a re-picked atom", () => {
  const d = 4, n = 4;
  const decW = new Float32Array(n * d);
  for (let i = 0; i < n; i++) decW[i * d + i] = 1;
  const xs = new Float32Array([3, 1, 0, 0, /**/ -1, -2, 0, 0, /**/ 1, 0, 0, 0.004]);
  const s = mpPursuit(xs, decW, 3, d, n, 4);
  // row 0: picks e0 (3), e1 (1), then the residual is 0 → 2 picks
  assert.deepEqual(Array.from(s.info.subarray(0, 3)), [2, 1, 2]);
  // row 1: nothing correlates positively → no pick
  assert.deepEqual(Array.from(s.info.subarray(4, 7)), [0, 1, 0]);
  // row 2: e0 (1), then the residual 0.004 < eps = 5e-3 → done after 1 pick
  assert.deepEqual(Array.from(s.info.subarray(8, 11)), [1, 1, 1]);
  // info[3] holds the f32 bits of ‖r‖² (the kernel's layout): row 1 never moved from ‖xs‖² = 5
  assertClose(s.rnorm2, [0, 5, 0.004 ** 2], { atol: 1e-9, rtol: 1e-6, label: "rnorm2" });
  assert.equal(s.info[7], f32Bits(5));
  // a re-pick (few atoms, many steps): the row stops right after picking an atom again
  const s2 = mpPursuit(randn(5 * 17, 203), unitRows(randn(6 * 17, 103), 6, 17), 5, 17, 6, 6);
  const repicked = [0, 1, 2, 3, 4].filter((b) => s2.info[b * 4 + 2] > s2.info[b * 4]);
  assert.ok(repicked.length > 0, "some row re-picked an atom");
  for (const b of repicked) {
    assert.equal(s2.info[b * 4 + 1], 1);
    assert.equal(s2.info[b * 4 + 2], s2.info[b * 4] + 1, "exactly one re-pick, then stop");
    const last = s2.pickIdx[b * 6 + s2.info[b * 4 + 2] - 1];
    const earlier = Array.from(s2.pickIdx.subarray(b * 6, b * 6 + s2.info[b * 4 + 2] - 1));
    assert.ok(earlier.includes(last));
  }
});

Deno.test("mpBackward equals finite differences of the loss through every iteration", () => {
  const B = 3, d = 6, n = 5, k = 4;
  const decW = unitRows(randn(n * d, 11), n, d);
  const xs = randn(B * d, 12);
  const s = mpPursuit(xs, decW, B, d, n, k, 0);
  assert.ok(Array.from({ length: B }, (_, b) => s.info[b * 4 + 2]).some((p) => p >= 3));
  const V = batchVariance(xs, B, d);
  const grad = mpBackward(s, decW, B, d, n, V);
  const w = Float64Array.from(decW);
  const loss = () => mpLoss(mpResidualFixed(xs, w, s.pickIdx, s.info, B, d, k), V);
  const h = 1e-5;
  const numeric = new Float64Array(n * d);
  for (let i = 0; i < n * d; i++) {
    const keep = w[i];
    w[i] = keep + h;
    const up = loss();
    w[i] = keep - h;
    const down = loss();
    w[i] = keep;
    numeric[i] = (up - down) / (2 * h);
  }
  assert.ok(numeric.some((v) => Math.abs(v) > 1e-2), "the check has non-trivial gradients");
  assertClose(grad, numeric, { atol: 2e-4, rtol: 2e-3, label: "grad decW" });
});
