/**
 * Activation coverage S_cov (paper Eq. 4) and Masked Cosine Similarity (MCS, Bricken et
 * al. 2023; Bussmann et al. 2025) in the four variants of App. I, from co-activation
 * statistics (coactivation.ts) and per-feature statistics (sparse_codes.ts).
 *
 * For parent p and child c, over tokens t (a = activation, "fires" = a > FIRE_THRESHOLD):
 *   S_cov(p, c) = #{t: p and c fire} / #{t: c fires}
 *   MCS(p, c)   = Σ_{t: c fires} a_p a_c / (sqrt(Σ_{t: c fires} a_c²) · sqrt(Σ_{t: c fires} a_p²)),
 *                 the cosine of the two activation vectors restricted to the child's tokens.
 *   binary:  activations replaced by 1 when firing, so MCS = sqrt(S_cov).
 *   scaled:  MCS × min(max_c, max_p) / max_p, max_* = largest activation of the feature
 *            (Bussmann et al.). Both maxima are the continuous ones in every variant (the
 *            reference code takes the child maximum after binarising in the binary-scaled
 *            variant, i.e. 1 — we do not copy that).
 * The paper uses binary, not scaled (App. I). A score is 0 when the pair never co-fires.
 */
import type { CoactivationStats } from "./coactivation.ts";
import type { FeatureStats } from "./sparse_codes.ts";

/** One of the four MCS variants of App. I. */
export interface McsVariant {
  /** Treat activations as 1 when firing. */
  binary: boolean;
  /** Multiply by min(max_c, max_p) / max_p. */
  scaled: boolean;
}

/** The variant the paper uses for every MCS result (App. I: non-scaled binary). */
export const PAPER_MCS: McsVariant = { binary: true, scaled: false };

/** All four variants with their names as used in result files. */
export const MCS_VARIANTS: Record<string, McsVariant> = {
  binary: { binary: true, scaled: false },
  binary_scaled: { binary: true, scaled: true },
  continuous: { binary: false, scaled: false },
  continuous_scaled: { binary: false, scaled: true },
};

/** S_cov(parents[pi], c) (Eq. 4); 0 when c never fires. */
export function coverageScore(
  co: CoactivationStats,
  fs: FeatureStats,
  pi: number,
  c: number,
): number {
  const nc = fs.count[c];
  return nc > 0 ? co.count[pi * co.n + c] / nc : 0;
}

/** MCS(parents[pi], c) in the given variant. */
export function mcsScore(
  co: CoactivationStats,
  fs: FeatureStats,
  pi: number,
  c: number,
  variant: McsVariant,
): number {
  const o = pi * co.n + c;
  const both = co.count[o];
  if (both === 0 || fs.count[c] === 0) return 0;
  let score: number;
  if (variant.binary) {
    score = Math.sqrt(both / fs.count[c]);
  } else {
    const denom = Math.sqrt(fs.sumSq[c]) * Math.sqrt(co.parentSq[o]);
    score = denom > 0 ? co.prod[o] / denom : 0;
  }
  if (variant.scaled) {
    const maxP = fs.max[co.parents[pi]];
    score = maxP > 0 ? score * Math.min(fs.max[c], maxP) / maxP : 0;
  }
  return score;
}

/** A child candidate and its score. */
export interface ScoredChild {
  child: number;
  score: number;
}

/** Options of topChildren. */
export interface TopChildrenOptions {
  /** MCS variant (default PAPER_MCS). */
  variant?: McsVariant;
  /** How many children to keep. */
  top: number;
  /** Children that fire on fewer tokens are skipped (ref: 100 tokens). */
  minChildCount?: number;
}

/**
 * The `top` children of parents[pi] by MCS, best first (ties → lower feature index);
 * never the parent itself, only children with a positive score.
 */
export function topChildren(
  co: CoactivationStats,
  fs: FeatureStats,
  pi: number,
  { variant = PAPER_MCS, top, minChildCount = 0 }: TopChildrenOptions,
): ScoredChild[] {
  const out: ScoredChild[] = [];
  const p = co.parents[pi];
  for (let c = 0; c < co.n; c++) {
    if (c === p || fs.count[c] < Math.max(1, minChildCount)) continue;
    const score = mcsScore(co, fs, pi, c, variant);
    if (score > 0) out.push({ child: c, score });
  }
  out.sort((a, b) => b.score - a.score || a.child - b.child);
  return out.slice(0, top);
}
