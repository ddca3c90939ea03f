import assert from "node:assert/strict";
import {
  fitLogRegGpu,
  fitLogRegReference,
  positiveWeights,
  projectReference,
  projectRows,
} from "../../lib/eval/logreg.ts";
import { assertClose, randn, testGpu } from "../_util.ts";

/** Separable-ish data: probe j fires when x·u_j > threshold (imbalanced classes). */
function problem(N: number, d: number, P: number, seed: number) {
  const x = randn(N * d, seed);
  const u = randn(P * d, seed + 1);
  const labels = new Float32Array(N * P);
  for (let b = 0; b < N; b++) {
    for (let j = 0; j < P; j++) {
      let z = 0;
      for (let i = 0; i < d; i++) z += x[b * d + i] * u[j * d + i];
      labels[b * P + j] = z > 0.8 * (j + 1) ? 1 : 0;
    }
  }
  return { x, u, labels };
}

Deno.test("positiveWeights is #negatives / #positives per probe", () => {
  const labels = new Float32Array([1, 0, 0, 0, 0, 1, 1, 0]); // N = 4, P = 2
  assertClose(positiveWeights(labels, 4, 2), [1, 3]);
});

Deno.test("GPU logistic regression matches the TS reference fit on a small problem", async () => {
  const gpu = await testGpu();
  const [N, d, P] = [203, 7, 3];
  const { x, labels } = problem(N, d, P, 5);
  const options = { epochs: 6, batchSize: 50, lr: 0.05, lrEnd: 0.005, seed: 3 };
  const want = fitLogRegReference(x, labels, N, d, P, options);
  const got = await fitLogRegGpu(gpu, x, labels, N, d, P, options);
  assertClose(got.weights, want.weights, { atol: 2e-4, rtol: 1e-3, label: "weights" });
  assertClose(got.bias, want.bias, { atol: 2e-4, rtol: 1e-3, label: "bias" });
  assertClose(got.posWeight, want.posWeight, { label: "posWeight" });
});

Deno.test("the reference fit finds the planted direction and classifies well", () => {
  const [N, d, P] = [600, 6, 2];
  const { x, u, labels } = problem(N, d, P, 9);
  const fit = fitLogRegReference(x, labels, N, d, P, {
    epochs: 60,
    batchSize: 100,
    lr: 0.05,
    lrEnd: 1e-3,
  });
  for (let j = 0; j < P; j++) {
    const w = fit.weights.subarray(j * d, j * d + d);
    const uj = u.subarray(j * d, j * d + d);
    const cos = projectReference(w, uj, 1, 1, d)[0] /
      Math.sqrt(projectReference(w, w, 1, 1, d)[0] * projectReference(uj, uj, 1, 1, d)[0]);
    assert.ok(cos > 0.95, `probe ${j}: cosine with the planted direction ${cos}`);
    // Class-balanced training targets balanced accuracy (mean of the two recalls).
    const hit = [0, 0], total = [0, 0];
    for (let b = 0; b < N; b++) {
      let z = fit.bias[j];
      for (let i = 0; i < d; i++) z += w[i] * x[b * d + i];
      const y = labels[b * P + j] > 0.5 ? 1 : 0;
      total[y]++;
      if ((z > 0) === (y === 1)) hit[y]++;
    }
    const balanced = (hit[0] / total[0] + hit[1] / total[1]) / 2;
    assert.ok(balanced > 0.95, `probe ${j}: balanced accuracy ${balanced}`);
  }
});

Deno.test("project kernel matches the TS twin at odd sizes", async () => {
  const gpu = await testGpu();
  for (const [R, P, d] of [[1, 1, 1], [67, 5, 13], [130, 3, 33]]) {
    const a = randn(R * d, R), b = randn(P * d, P + 100);
    assertClose(await projectRows(gpu, a, b, R, P, d), projectReference(a, b, R, P, d), {
      atol: 1e-5,
      rtol: 1e-5,
      label: `R=${R} P=${P} d=${d}`,
    });
  }
});
