import assert from "node:assert/strict";
import { firstLetterMetric, type LetterSplit } from "../../lib/eval/first_letter.ts";
import {
  f1Score,
  fitL1Probes,
  fitSparseLogReg,
  topKIndices,
} from "../../lib/eval/first_letter_sparse.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { initState } from "../../lib/sae/engine.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { randn, testGpu } from "../_util.ts";

const D = 32;
/** The extra direction an absorbing latent adds (outside the 26 letter directions). */
const EXTRA = 26;
/**
 * Feature amplitude. Large on purpose: the per-token std (≈ AMP/6) then differs from 1, so
 * comparing latent projections (standardised units) with x·probe (raw units) without the
 * σ conversion would miss the absorption below.
 */
const AMP = 40;

/**
 * Words of each letter: x = AMP·e_letter + AMP/40·noise. `absorbed` words of letter 0 also
 * carry AMP·e_EXTRA (the token-specific feature an absorbing latent learns).
 */
function split(perLetter: number[], absorbed: number, seed: number): LetterSplit {
  const letters: number[] = [];
  perLetter.forEach((c, j) => {
    for (let i = 0; i < c; i++) letters.push(j);
  });
  const N = letters.length + absorbed;
  const x = randn(N * D, seed).map((v) => (AMP / 40) * v);
  const words: string[] = [];
  letters.forEach((j, r) => {
    x[r * D + j] += AMP;
    words.push(`${String.fromCharCode(97 + j)}${r}`);
  });
  for (let i = 0; i < absorbed; i++) {
    const r = letters.length + i;
    x[r * D] += AMP;
    x[r * D + EXTRA] += AMP;
    words.push(`absorbed${i}`);
  }
  return { x, letters: Int32Array.from([...letters, ...new Array(absorbed).fill(0)]), words };
}

/** TopK(k=1) SAE whose latent j is e_j for j < 26, plus optionally (e_0 + e_EXTRA)/√2. */
function plantedSae(withAbsorber: boolean) {
  const n = withAbsorber ? 27 : 26;
  const config = makeConfig({ arch: "topk", dIn: D, layers: [n], k: 1, auxK: 0, seed: 1 });
  const state = initState(config);
  state.encW.fill(0);
  state.decW.fill(0);
  state.bDec.fill(0);
  state.step = 1;
  for (let j = 0; j < 26; j++) state.encW[j * D + j] = state.decW[j * D + j] = 1;
  if (withAbsorber) {
    state.encW[26 * D] = state.decW[26 * D] = Math.SQRT1_2;
    state.encW[26 * D + EXTRA] = state.decW[26 * D + EXTRA] = Math.SQRT1_2;
  }
  const engine = new ReferenceEngine(config, state);
  return { n, decW: state.decW, encode: (x: Float32Array, B: number) => engine.encode(x, B) };
}

const counts = (first: number, rest: number) => [first, ...new Array(25).fill(rest)];
const fast = {
  seed: 3,
  probe: { epochs: 30, batchSize: 64, lr: 0.01, lrEnd: 1e-4, weightDecay: 1e-4, seed: 0 },
  sparse: {
    epochs: 30,
    batchSize: 256,
    lr: 0.01,
    lrEnd: 1e-4,
    weightDecay: 1e-6,
    l1: 0.01,
    seed: 0,
  },
};

Deno.test("first-letter metric: latents equal to the letter directions → one latent per letter, no absorption", async () => {
  const gpu = await testGpu();
  const sae = plantedSae(false);
  const r = await firstLetterMetric(gpu, {
    train: split(counts(12, 12), 0, 1),
    test: split(counts(8, 8), 0, 2),
    d: D,
    ...sae,
  }, fast);
  assert.equal(r.lettersEvaluated, 26);
  for (const l of r.letters) {
    const j = l.letter.charCodeAt(0) - 97;
    assert.equal(l.probeF1, 1, `ground-truth probe of ${l.letter}`);
    assert.equal(l.topLatents[0], j, `top latent of ${l.letter}`);
    assert.equal(l.f1ByK[0], 1);
    assert.deepEqual(l.splitFeatures, [j]);
    assert.equal(l.probeTruePositives, 8);
    assert.equal(l.numFullAbsorption, 0);
    assert.equal(l.meanAbsorptionFraction, 0);
  }
  assert.equal(r.meanNumSplitFeatures, 0);
  assert.equal(r.meanAbsorptionFraction, 0);
  assert.equal(r.meanFullAbsorptionRate, 0);
});

Deno.test("first-letter metric: a planted absorbing latent is detected as full absorption", async () => {
  const sae = plantedSae(true);
  // 40 test words of "a", one of them absorbed: missing it costs the 1-sparse probe
  // F1 < 0.03, so the absorber does not count as a split feature.
  const r = await firstLetterMetric(null, {
    train: split(counts(30, 10), 0, 1),
    test: split(counts(39, 4), 1, 2),
    d: D,
    ...sae,
  }, fast);
  const a = r.letters[0];
  assert.deepEqual(a.splitFeatures, [0]);
  assert.ok(a.f1ByK[0] > 0.97 && a.f1ByK[0] < 1, `F1 ${a.f1ByK[0]}`);
  assert.equal(a.probeTruePositives, 40);
  assert.equal(a.numFullAbsorption, 1);
  assert.deepEqual(a.examples, [{ word: "absorbed0", absorber: 26 }]);
  assert.equal(a.fullAbsorptionRate, 1 / 40);
  assert.equal(a.meanAbsorptionFraction, 1 / 40);
  for (const l of r.letters.slice(1)) assert.equal(l.numFullAbsorption, 0);
  assert.equal(r.lettersEvaluated, 26);
  assert.ok(Math.abs(r.meanFullAbsorptionRate - 1 / 40 / 26) < 1e-12);
});

Deno.test("first-letter metric: a letter that no latent represents is skipped (1-sparse F1 < 0.4)", async () => {
  const sae = plantedSae(false);
  // Zero the latent of "b": no latent carries the letter any more.
  sae.decW.fill(0, 1 * D, 2 * D);
  const config = makeConfig({ arch: "topk", dIn: D, layers: [26], k: 1, auxK: 0, seed: 1 });
  const state = initState(config);
  state.encW.fill(0);
  state.bDec.fill(0);
  state.step = 1;
  state.decW.set(sae.decW);
  for (let j = 0; j < 26; j++) if (j !== 1) state.encW[j * D + j] = 1;
  const engine = new ReferenceEngine(config, state);
  const r = await firstLetterMetric(null, {
    train: split(counts(10, 10), 0, 1),
    test: split(counts(6, 6), 0, 2),
    d: D,
    n: 26,
    decW: state.decW,
    encode: (x, B) => engine.encode(x, B),
  }, fast);
  const b = r.letters[1];
  assert.equal(b.evaluated, false);
  assert.match(b.skipped!, /1-sparse probe F1 0\.\d+ < 0\.4/);
  assert.equal(r.lettersEvaluated, 25);
});

Deno.test("fitSparseLogReg matches the balanced L2 optimum: zero gradient at the solution", () => {
  const N = 60, k = 2;
  const x = Float64Array.from(randn(N * k, 9));
  const y = Array.from({ length: N }, (_, r) => (x[r * k] + 0.5 * x[r * k + 1] > 0.8 ? 1 : 0));
  const fit = fitSparseLogReg(x, y, N, k);
  const nPos = y.reduce((a: number, b) => a + b, 0);
  const g = [...fit.weights, 0];
  for (let r = 0; r < N; r++) {
    const sw = y[r] ? N / (2 * nPos) : N / (2 * (N - nPos));
    const z = fit.bias + fit.weights[0] * x[r * k] + fit.weights[1] * x[r * k + 1];
    const e = sw * (1 / (1 + Math.exp(-z)) - y[r]);
    g[0] += e * x[r * k];
    g[1] += e * x[r * k + 1];
    g[2] += e;
  }
  for (const v of g) assert.ok(Math.abs(v) < 1e-6, `gradient ${g}`);
  // Rows of all zeros pooled or not give the same fit.
  const xz = new Float64Array((N + 5) * k);
  xz.set(x);
  const yz = [...y, 1, 0, 0, 1, 0];
  const a = fitSparseLogReg(xz, yz, N + 5, k);
  assert.ok(a.weights.every(Number.isFinite) && Number.isFinite(a.bias));
});

Deno.test("fitL1Probes ranks the latent that carries each class first; f1Score and topKIndices", () => {
  // 3 classes, 5 latents: class c fires latent c (value 1), latent 4 fires everywhere (noise).
  const N = 90, K = 2;
  const idx = new Uint32Array(N * K), val = new Float32Array(N * K);
  const labels = Int32Array.from({ length: N }, (_, r) => r % 3);
  for (let r = 0; r < N; r++) {
    idx[r * K] = labels[r];
    val[r * K] = 1;
    idx[r * K + 1] = 4;
    val[r * K + 1] = 1;
  }
  const fit = fitL1Probes({ idx, val, rows: N, k: K }, labels, 5, 3, { epochs: 40, batchSize: 32 });
  for (let c = 0; c < 3; c++) {
    assert.equal(topKIndices(fit.weights.subarray(c * 5, c * 5 + 5), 1)[0], c);
  }
  assert.deepEqual(topKIndices([1, 3, 3, 0], 3), [1, 2, 0]);
  assert.equal(f1Score([true, true, false, false], [true, false, true, false]), 0.5);
  assert.equal(f1Score([false], [true]), 0);
});
