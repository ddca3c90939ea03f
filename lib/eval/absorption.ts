/**
 * Scoring core of the first-letter absorption and splitting metrics (paper App. D.1; Chanin
 * et al. 2024 as packaged by SAEBench; thresholds from the tree-sae reference). Only the
 * per-letter split rule and the per-word absorption decision live here; the pipeline that
 * feeds them (alphabetic vocabulary, in-context prompts run through the model, the 26-way
 * ground-truth letter probe, L1-ranked k-sparse probes) is first_letter*.ts.
 *
 * Feature splitting (per letter): with F1 of the k-sparse probe for k = 1..K on held-out
 * words, walk k upwards while F1 rises by more than `f1Jump` over the best so far; the
 * latents of the last accepted k are the letter's "split features" and
 * numSplitFeatures = (their count) − 1.
 *
 * Absorption (per word whose ground-truth probe fires but the main latents may not), with
 * a = SAE activations [n], c_f = cos(probe, d_f) for every decoder row, proj_f = a_f·c_f and
 * P = x·probe (the activation's projection on the unit probe direction):
 *  - absorption fraction: M = Σ_{f ∈ main} proj_f; absorbers = non-main latents with
 *    c_f ≥ 0.1 and proj_f > 0, their top 3 projections summing to A. Fraction is 0 when
 *    M ≥ P or A/P < 0.4; 1 when M ≤ 0; else min(A, P − M) / (min(A, P − M) + M), clipped to [0, 1].
 *  - full absorption: every main latent has a_f < 1e-8, the top-projecting latent has
 *    c ≥ 0.025, P ≥ 0 and that latent's projection is at least 0.4·P.
 */

/** F1 gain over the best smaller k that counts as a split (Chanin et al.; paper App. D.1). */
export const SPLIT_F1_JUMP = 0.03;
/** A letter's probe must reach this F1 to count as representing the letter (paper App. D.1). */
export const MIN_PROBE_F1 = 0.4;
/** Full absorption: the top-projecting latent's cosine with the probe must reach this (ref). */
export const FULL_ABSORPTION_COS = 0.025;
/** Absorption fraction: a potential absorber's cosine with the probe must reach this (ref). */
export const ABSORBER_COS = 0.1;
/** Both metrics: the absorbers must carry at least this share of the probe projection (ref). */
export const PROJECTION_SHARE = 0.4;
/** Absorption fraction: at most this many latents compensate together (ref). */
export const MAX_ABSORBERS = 3;
/** A main latent with activation below this has not fired (ref). */
const ACT_EPS = 1e-8;

/** Split features of one letter from its k-sparse probes. */
export interface SplitResult {
  /** Latents of the last k accepted (the letter's main latents). */
  features: number[];
  /** features.length − 1 (0 when one latent suffices). */
  numSplitFeatures: number;
}

/**
 * The split rule: `f1[k-1]` is the F1 of the k-sparse probe whose latents are
 * `featuresByK[k-1]`; stop at the first k whose F1 does not beat the best by more than f1Jump.
 */
export function featureSplits(
  f1: number[],
  featuresByK: number[][],
  f1Jump = SPLIT_F1_JUMP,
): SplitResult {
  let best = -100;
  let features: number[] = [];
  for (let k = 0; k < f1.length; k++) {
    if (!(f1[k] > best + f1Jump)) break;
    best = f1[k];
    features = featuresByK[k];
  }
  return { features, numSplitFeatures: features.length - 1 };
}

/** Absorption of one word. */
export interface WordAbsorption {
  absorptionFraction: number;
  isFullAbsorption: boolean;
}

/**
 * Score one word: `acts` [n] SAE activations of the word's activation, `cos` [n] cosine of
 * every decoder row with the unit probe, `probeProjection` = x·probe, `main` the letter's
 * main latents (from featureSplits).
 */
export function wordAbsorption(
  acts: ArrayLike<number>,
  cos: ArrayLike<number>,
  probeProjection: number,
  main: number[],
): WordAbsorption {
  const n = acts.length;
  const isMain = new Set(main);
  const proj = Float64Array.from({ length: n }, (_, f) => acts[f] * cos[f]);
  const mainProj = main.reduce((s, f) => s + proj[f], 0);
  const absorbers: number[] = [];
  for (let f = 0; f < n; f++) {
    if (!isMain.has(f) && cos[f] >= ABSORBER_COS && proj[f] > 0) absorbers.push(proj[f]);
  }
  absorbers.sort((a, b) => b - a);
  const absorbed = absorbers.slice(0, MAX_ABSORBERS).reduce((s, v) => s + v, 0);
  let fraction: number;
  if (mainProj >= probeProjection || absorbed / probeProjection < PROJECTION_SHARE) fraction = 0;
  else if (mainProj <= 0) fraction = 1;
  else {
    const a = Math.min(absorbed, probeProjection - mainProj);
    fraction = Math.min(1, Math.max(0, a / (a + mainProj)));
  }
  // Full absorption: the single top-projecting latent (ties → lower index).
  let top = 0;
  for (let f = 1; f < n; f++) if (proj[f] > proj[top]) top = f;
  const isFull = main.every((f) => acts[f] < ACT_EPS) &&
    cos[top] >= FULL_ABSORPTION_COS &&
    probeProjection >= 0 &&
    proj[top] / probeProjection >= PROJECTION_SHARE;
  return { absorptionFraction: fraction, isFullAbsorption: isFull };
}
