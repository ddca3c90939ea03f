/**
 * First-letter absorption and splitting of one SAE (paper App. D.1; Chanin et al. 2024 as
 * packaged by SAEBench), from model activations of in-context prompts at the query word
 * (first_letter_vocab.ts builds them, first_letter_model.ts runs the model).
 *
 * 1. Ground truth: 26 one-vs-rest class-balanced logistic probes on the train words'
 *    activations (logreg.ts, GPU or TS twin; SAEBench settings: 50 epochs, batch 64,
 *    lr 0.01 → 1e-5, weight decay 1e-4). A test word is a probe true positive for its letter
 *    when that probe's logit is > 0.
 * 2. k-sparse probing (first_letter_sparse.ts) on the SAE codes for k = 1..maxK, F1 on the
 *    test words; the split rule (absorption.ts `featureSplits`, F1 jump > 0.03) gives each
 *    letter's main latents. A letter whose 1-sparse probe has F1 < 0.4 does not count as
 *    represented and is skipped (MIN_PROBE_F1); so is a letter without train/test words.
 * 3. Absorption (absorption.ts `wordAbsorption`) on every probe true positive of an
 *    evaluated letter: mean absorption fraction = Σ fractions / #true positives, full
 *    absorption rate = #full / #true positives (SAEBench `_aggregate_results_df`); the SAE's
 *    numbers are the means over evaluated letters with at least one true positive.
 *
 * Units: the engine encodes per-token standardised inputs, so latent f adds
 * a_f·(σ_t + 1e-5)·d_f to the raw reconstruction; its projection on the raw-space probe is
 * a_f·(σ_t + 1e-5)·‖d_f‖·cos(d_f, probe), and that is what is compared with x·probe.
 * Deviation: absorption reuses each test word's prompt (SAEBench draws fresh in-context
 * examples for this step), so no second model pass is needed.
 */
import type { Gpu } from "../gpu/device.ts";
import { DEFAULT_LOGREG, fitLogRegGpu, fitLogRegReference, type LogRegOptions } from "./logreg.ts";
import { featureSplits, MIN_PROBE_F1, SPLIT_F1_JUMP, wordAbsorption } from "./absorption.ts";
import {
  type CodeRows,
  DEFAULT_L1_PROBE,
  f1Score,
  fitL1Probes,
  fitSparseLogReg,
  gatherFeatures,
  type L1ProbeOptions,
  topKIndices,
} from "./first_letter_sparse.ts";
import { LETTERS } from "./first_letter_vocab.ts";
import { standardize } from "../sae/reference/standardize.ts";

/** Largest k of the k-sparse probes (SAEBench max_k_value). */
export const MAX_K = 10;
/** The engine's standardisation eps (lib/sae/reference/standardize.ts STD_EPS). */
const STD_EPS = 1e-5;
/** An unused code slot. */
const UNUSED = 0xFFFFFFFF;

/** Ground-truth probe settings (SAEBench train_and_save_probes / train_linear_probe_for_task). */
export const FIRST_LETTER_PROBE: LogRegOptions = {
  ...DEFAULT_LOGREG,
  epochs: 50,
  batchSize: 64,
  lr: 0.01,
  lrEnd: 1e-5,
  weightDecay: 1e-4,
};

/** Settings of the metric. */
export interface FirstLetterOptions {
  maxK: number;
  f1Jump: number;
  minProbeF1: number;
  /** Ground-truth probe fit (its seed is replaced by `seed`). */
  probe: LogRegOptions;
  /** L1 ranking probes (its seed is replaced by `seed`). */
  sparse: L1ProbeOptions;
  seed: number;
  /** Rows per engine call. */
  batchSize: number;
}

/** Defaults (SAEBench / paper values). */
export const DEFAULT_FIRST_LETTER: FirstLetterOptions = {
  maxK: MAX_K,
  f1Jump: SPLIT_F1_JUMP,
  minProbeF1: MIN_PROBE_F1,
  probe: FIRST_LETTER_PROBE,
  sparse: DEFAULT_L1_PROBE,
  seed: 0,
  batchSize: 1024,
};

/** Activations of one split: x [N, d] at the query word, its letter class, its text. */
export interface LetterSplit {
  x: Float32Array;
  letters: Int32Array;
  words?: string[];
}

/** What the metric needs. */
export interface FirstLetterInput {
  train: LetterSplit;
  test: LetterSplit;
  d: number;
  n: number;
  /** Decoder rows [n, d]. */
  decW: Float32Array;
  /** Inference codes of raw activations x [B, d] (SaeEngine.encode). */
  encode: (
    x: Float32Array,
    B: number,
  ) => Promise<{ idx: Uint32Array; val: Float32Array; K: number }>;
}

/** Per-letter outcome. */
export interface LetterResult {
  letter: string;
  trainWords: number;
  testWords: number;
  /** F1 of the ground-truth probe on the test words. */
  probeF1: number;
  /** F1 of the k-sparse probe for k = 1..maxK on the test words. */
  f1ByK: number[];
  /** The maxK top-ranked latents (the k-sparse probe of k uses the first k). */
  topLatents: number[];
  /** Latents of the last accepted k (the letter's main latents). */
  splitFeatures: number[];
  numSplitFeatures: number;
  /** Evaluated (1-sparse F1 ≥ minProbeF1, words in both splits); else why not. */
  evaluated: boolean;
  skipped?: string;
  probeTruePositives: number;
  meanAbsorptionFraction: number;
  numFullAbsorption: number;
  fullAbsorptionRate: number;
  /** Up to 10 fully absorbed test words with the absorbing latent. */
  examples: { word: string; absorber: number }[];
}

/** The metric's result. */
export interface FirstLetterResult {
  /** Mean over evaluated letters with a probe true positive. */
  meanAbsorptionFraction: number;
  meanFullAbsorptionRate: number;
  /** Mean over evaluated letters of numSplitFeatures. */
  meanNumSplitFeatures: number;
  lettersEvaluated: number;
  letters: LetterResult[];
}

/** Encode rows in batches; codes plus per-row raw-space scale σ_t + eps. */
async function encodeAll(
  input: FirstLetterInput,
  x: Float32Array,
  rows: number,
  batchSize: number,
): Promise<CodeRows & { scale: Float32Array }> {
  const d = input.d;
  const parts: { idx: Uint32Array; val: Float32Array; K: number; B: number }[] = [];
  for (let r0 = 0; r0 < rows; r0 += batchSize) {
    const B = Math.min(batchSize, rows - r0);
    const e = await input.encode(x.subarray(r0 * d, (r0 + B) * d), B);
    parts.push({ ...e, B });
  }
  const K = Math.max(1, ...parts.map((p) => p.K));
  const idx = new Uint32Array(rows * K).fill(UNUSED), val = new Float32Array(rows * K);
  let r = 0;
  for (const p of parts) {
    for (let b = 0; b < p.B; b++, r++) {
      idx.set(p.idx.subarray(b * p.K, (b + 1) * p.K), r * K);
      val.set(p.val.subarray(b * p.K, (b + 1) * p.K), r * K);
    }
  }
  const { std } = standardize(x.subarray(0, rows * d), rows, d);
  return { idx, val, rows, k: K, scale: Float32Array.from(std, (s) => s + STD_EPS) };
}

/** Run the first-letter metric. */
export async function firstLetterMetric(
  gpu: Gpu | null,
  input: FirstLetterInput,
  options: Partial<FirstLetterOptions> = {},
): Promise<FirstLetterResult> {
  const o: FirstLetterOptions = { ...DEFAULT_FIRST_LETTER, ...options };
  const { d, n, decW, train, test } = input;
  const P = LETTERS.length;
  const Ntr = train.letters.length, Nte = test.letters.length;
  if (train.x.length !== Ntr * d || test.x.length !== Nte * d) {
    throw new RangeError(`first-letter: activations are not [words, ${d}]`);
  }
  // 1. Ground-truth probes on the model's activations.
  const onehot = new Float32Array(Ntr * P);
  for (let r = 0; r < Ntr; r++) onehot[r * P + train.letters[r]] = 1;
  const probeOpts = { ...o.probe, seed: o.seed };
  const gt = gpu
    ? await fitLogRegGpu(gpu, train.x, onehot, Ntr, d, P, probeOpts)
    : fitLogRegReference(train.x, onehot, Ntr, d, P, probeOpts);
  const unitProbe = new Float64Array(P * d);
  for (let j = 0; j < P; j++) {
    let nrm = 0;
    for (let i = 0; i < d; i++) nrm += gt.weights[j * d + i] ** 2;
    nrm = Math.sqrt(nrm) || 1;
    for (let i = 0; i < d; i++) unitProbe[j * d + i] = gt.weights[j * d + i] / nrm;
  }
  const logit = (r: number, j: number) => {
    let z = gt.bias[j];
    for (let i = 0; i < d; i++) z += gt.weights[j * d + i] * test.x[r * d + i];
    return z;
  };
  // Decoder row norms and cosines with each unit probe.
  const decNorm = new Float64Array(n);
  const cos = new Float64Array(P * n);
  for (let f = 0; f < n; f++) {
    let nrm = 0;
    for (let i = 0; i < d; i++) nrm += decW[f * d + i] ** 2;
    decNorm[f] = Math.sqrt(nrm);
    for (let j = 0; j < P; j++) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += decW[f * d + i] * unitProbe[j * d + i];
      cos[j * n + f] = decNorm[f] > 0 ? dot / decNorm[f] : 0;
    }
  }
  // 2. SAE codes and the L1 ranking probes.
  const trCodes = await encodeAll(input, train.x, Ntr, o.batchSize);
  const teCodes = await encodeAll(input, test.x, Nte, o.batchSize);
  const l1 = fitL1Probes(trCodes, train.letters, n, P, { ...o.sparse, seed: o.seed });

  const letters: LetterResult[] = [];
  const dense = new Float64Array(n);
  for (let j = 0; j < P; j++) {
    const trainWords = train.letters.filter((c) => c === j).length;
    const testWords = test.letters.filter((c) => c === j).length;
    const truthTe = Array.from(test.letters, (c) => c === j);
    const probeF1 = f1Score(Array.from({ length: Nte }, (_, r) => logit(r, j) > 0), truthTe);
    const top = topKIndices(l1.weights.subarray(j * n, (j + 1) * n), o.maxK);
    const yTr = Array.from(train.letters, (c) => (c === j ? 1 : 0));
    const xTr = gatherFeatures(trCodes, top), xTe = gatherFeatures(teCodes, top);
    const f1ByK: number[] = [];
    const K = top.length;
    for (let k = 1; k <= K && trainWords > 0 && testWords > 0; k++) {
      const sub = (x: Float64Array, N: number) => {
        const out = new Float64Array(N * k);
        for (let r = 0; r < N; r++) for (let i = 0; i < k; i++) out[r * k + i] = x[r * K + i];
        return out;
      };
      const fit = fitSparseLogReg(sub(xTr, Ntr), yTr, Ntr, k);
      const pred = Array.from({ length: Nte }, (_, r) => {
        let z = fit.bias;
        for (let i = 0; i < k; i++) z += fit.weights[i] * xTe[r * K + i];
        return z > 0;
      });
      f1ByK.push(f1Score(pred, truthTe));
    }
    const split = featureSplits(f1ByK, f1ByK.map((_, k) => top.slice(0, k + 1)), o.f1Jump);
    const result: LetterResult = {
      letter: LETTERS[j],
      trainWords,
      testWords,
      probeF1,
      f1ByK,
      topLatents: top,
      splitFeatures: split.features,
      numSplitFeatures: split.numSplitFeatures,
      evaluated: false,
      probeTruePositives: 0,
      meanAbsorptionFraction: 0,
      numFullAbsorption: 0,
      fullAbsorptionRate: 0,
      examples: [],
    };
    letters.push(result);
    if (trainWords === 0 || testWords === 0) {
      result.skipped = "no words in the train or test split";
      continue;
    }
    if (!(f1ByK[0] >= o.minProbeF1)) {
      result.skipped = `1-sparse probe F1 ${f1ByK[0].toFixed(3)} < ${o.minProbeF1}`;
      continue;
    }
    result.evaluated = true;
    // 3. Absorption on the probe's true positives.
    const main = split.features;
    let fracSum = 0;
    for (let r = 0; r < Nte; r++) {
      if (test.letters[r] !== j || !(logit(r, j) > 0)) continue;
      result.probeTruePositives++;
      let P_ = 0;
      for (let i = 0; i < d; i++) P_ += test.x[r * d + i] * unitProbe[j * d + i];
      // Compact to fired ∪ main latents, in index order (unfired latents project to 0).
      const ids = new Set(main);
      for (let s = 0; s < teCodes.k; s++) {
        const f = teCodes.idx[r * teCodes.k + s];
        if (f !== UNUSED) {
          ids.add(f);
          dense[f] += teCodes.val[r * teCodes.k + s];
        }
      }
      const order = [...ids].sort((a, b) => a - b);
      const acts = order.map((f) => dense[f] * teCodes.scale[r] * decNorm[f]);
      const cs = order.map((f) => cos[j * n + f]);
      const w = wordAbsorption(acts, cs, P_, main.map((f) => order.indexOf(f)));
      for (const f of order) dense[f] = 0;
      fracSum += w.absorptionFraction;
      if (w.isFullAbsorption) {
        result.numFullAbsorption++;
        if (result.examples.length < 10) {
          let best = 0;
          for (let q = 1; q < order.length; q++) {
            if (acts[q] * cs[q] > acts[best] * cs[best]) best = q;
          }
          result.examples.push({ word: test.words?.[r] ?? `#${r}`, absorber: order[best] });
        }
      }
    }
    const tp = result.probeTruePositives;
    result.meanAbsorptionFraction = tp ? fracSum / tp : 0;
    result.fullAbsorptionRate = tp ? result.numFullAbsorption / tp : 0;
  }
  const evaluated = letters.filter((l) => l.evaluated);
  const withTp = evaluated.filter((l) => l.probeTruePositives > 0);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  return {
    meanAbsorptionFraction: mean(withTp.map((l) => l.meanAbsorptionFraction)),
    meanFullAbsorptionRate: mean(withTp.map((l) => l.fullAbsorptionRate)),
    meanNumSplitFeatures: mean(evaluated.map((l) => l.numSplitFeatures)),
    lettersEvaluated: evaluated.length,
    letters,
  };
}
