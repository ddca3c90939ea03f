/** kernels/mp.wgsl against its TypeScript twin (lib/sae/mp/reference.ts), at awkward sizes. */
import assert from "node:assert/strict";
import { assertClose, randn, testGpu } from "../_util.ts";
import { uploadStorage } from "../../lib/gpu/buffer.ts";
import {
  MP_MIN_CORRELATION,
  MP_RESIDUAL_EPS,
  mpInit,
  mpIteration,
  mpPursuit,
} from "../../lib/sae/mp/reference.ts";
import { mpPursuitGpu } from "../../lib/sae/mp/pursuit_gpu.ts";

function unitRows(w: Float32Array, n: number, d: number): Float32Array {
  for (let i = 0; i < n; i++) {
    const row = w.subarray(i * d, (i + 1) * d);
    const norm = Math.hypot(...row);
    row.forEach((v, j) => (row[j] = v / norm));
  }
  return w;
}

const SHAPES = [
  { B: 1, d: 5, n: 3, k: 1 },
  { B: 7, d: 48, n: 65, k: 4 },
  { B: 33, d: 63, n: 130, k: 9 },
  { B: 5, d: 17, n: 6, k: 6 }, // k = n: re-picks and early stops
];

/** Row info without the ‖r‖² bits (compared with a tolerance through rnorm2). */
const meta = (info: Uint32Array) => Array.from(info).filter((_, i) => i % 4 !== 3);

for (const [s, shape] of SHAPES.entries()) {
  for (const variant of ["fused", "gemm"] as const) {
    Deno.test(`mp ${variant} equals mpIteration: B=${shape.B} d=${shape.d} n=${shape.n} k=${shape.k}`, async () => {
      const gpu = await testGpu();
      const { B, d, n, k } = shape;
      const decW = unitRows(randn(n * d, 100 + s), n, d);
      const xs = randn(B * d, 200 + s);
      const buf = uploadStorage(gpu, decW, "test decW");
      try {
        // gemm: row chunks of 4 make the bigger batches take several chunks
        const got = await mpPursuitGpu(
          gpu,
          buf,
          xs,
          { ...shape, chunkRows: 4 },
          MP_RESIDUAL_EPS,
          variant,
        );
        const want = mpPursuit(xs, decW, B, d, n, k);
        assert.deepEqual(got.pickIdx, want.pickIdx, "picks");
        assert.deepEqual(got.idx, want.idx, "slots");
        assert.deepEqual(meta(got.info), meta(want.info), "row info");
        assertClose(got.pickVal, want.pickVal, { atol: 1e-4, rtol: 1e-4, label: "pickVal" });
        assertClose(got.val, want.val, { atol: 1e-4, rtol: 1e-4, label: "val" });
        assertClose(got.residual, want.residual, { atol: 1e-4, rtol: 1e-4, label: "residual" });
        assertClose(got.rnorm2, want.rnorm2, { atol: 1e-3, rtol: 1e-4, label: "rnorm2" });
        if (s >= 2) {
          // these shapes include re-picked atoms (picks > slots) and rows that stop early
          const rows = Array.from({ length: B }, (_, b) => b);
          assert.ok(rows.some((b) => got.info[b * 4 + 2] > got.info[b * 4]), "a re-pick happened");
          assert.ok(rows.some((b) => got.info[b * 4 + 2] < k), "a row stopped early");
        }
      } finally {
        buf.destroy();
      }
    });
  }
}

Deno.test("mp_step stops a row whose residual is below eps, and one with no positive atom", async () => {
  const gpu = await testGpu();
  const d = 6, n = 4;
  const decW = new Float32Array(n * d);
  for (let i = 0; i < n; i++) decW[i * d + i] = 1; // atoms e_0..e_3
  // row 0: exactly 2·e_1 → one pick, residual 0 → done; row 1: −e_0 − e_2 → nothing positive
  const xs = new Float32Array(2 * d);
  xs[1] = 2;
  xs[d + 0] = -1;
  xs[d + 2] = -1;
  const buf = uploadStorage(gpu, decW, "test decW");
  try {
    const got = await mpPursuitGpu(gpu, buf, xs, { B: 2, d, n, k: 3 }, MP_RESIDUAL_EPS);
    assert.deepEqual(meta(got.info), [1, 1, 1, 0, 1, 0]);
    assert.deepEqual(Array.from(got.rnorm2), [0, 2]);
    assert.deepEqual(Array.from(got.idx), [
      1,
      0xffffffff,
      0xffffffff,
      0xffffffff,
      0xffffffff,
      0xffffffff,
    ]);
    assert.deepEqual(Array.from(got.val), [2, 0, 0, 0, 0, 0]);
    const twin = mpInit(xs, 2, d, 3);
    mpIteration(twin, decW, 2, d, n, MP_RESIDUAL_EPS);
    assert.deepEqual(meta(twin.info), meta(got.info));
  } finally {
    buf.destroy();
  }
});

Deno.test("mp picks need c > MP_MIN_CORRELATION·‖r‖: a rounding-level correlation ends the row", async () => {
  const gpu = await testGpu();
  const d = 5, n = 3;
  const decW = new Float32Array(n * d);
  for (let i = 0; i < n; i++) decW[i * d + i] = 1; // atoms e_0..e_2
  // ‖r‖ = 2 in both rows; the best correlation is 2e-6·‖r‖/2 (below the bar) or 2e-4 (above).
  const xs = new Float32Array(2 * d);
  xs.set([2e-6, -2, 0, 0, 0], 0);
  xs.set([2e-4, -2, 0, 0, 0], d);
  assert.ok(2e-6 < MP_MIN_CORRELATION * 2 && 2e-4 > MP_MIN_CORRELATION * 2);
  const buf = uploadStorage(gpu, decW, "test decW");
  try {
    const got = await mpPursuitGpu(gpu, buf, xs, { B: 2, d, n, k: 2 }, MP_RESIDUAL_EPS);
    // per row: slots used, done, picks (‖r‖² bits dropped)
    assert.deepEqual(meta(got.info).slice(0, 3), [0, 1, 0], "row 0 stops without a pick");
    assert.equal(got.idx[2], 0, "row 1 picks atom 0");
    const twin = mpPursuit(xs, decW, 2, d, n, 2);
    assert.deepEqual(meta(got.info), meta(twin.info));
    assert.deepEqual(got.idx, twin.idx);
  } finally {
    buf.destroy();
  }
});
