/**
 * The reconstruction condition (paper §3, Eq. 5) and the hierarchy metric (§5.2), with
 * logistic-regression probes (logreg.ts) giving each child's concept direction d*_c.
 *
 * - A probe per child c is trained on the model activations x to detect the tokens where c
 *   fires (class-balanced). d*_c = w / ‖w‖.
 * - S_res(p, c) = min(d*_c·d_c, d*_c·d_p) with unit decoder rows (Eq. 5; decoder rows are
 *   normalised here, so this is a cosine even for a decoder that is not unit-norm).
 * - Hierarchy metric (§5.2, procedure of the reference): the "dense half" = the ⌊n·denseRatio⌋
 *   features that fire most often (ties → lower index); nParents parents are drawn from it
 *   (seeded, without replacement — the reference draws with replacement). For each parent,
 *   children come from MCS (top `mcsCandidates` by MCS, then those firing on ≥ minChildCount
 *   tokens) or from the Tree SAE structure (direct children in layer order, same filter); a
 *   parent keeps n_keep = min(maxChildren, #candidates) children, and for a Tree SAE both
 *   procedures keep the same n_keep = min(maxChildren, #mcs, #tree) (paper: "an equal number
 *   of children for each procedure"). A pair is hierarchical when both the parent and the
 *   child decoder rows are among the `topFeatures` (5) rows with the highest cosine to d*_c
 *   (ties → lower index). Score = hierarchical pairs / pairs, per procedure.
 */
import type { Gpu } from "../gpu/device.ts";
import { coactivationStats } from "./coactivation.ts";
import { coverageScore, mcsScore, type McsVariant, PAPER_MCS, topChildren } from "./coverage.ts";
import {
  DEFAULT_LOGREG,
  fitLogRegGpu,
  fitLogRegReference,
  type LogRegOptions,
  projectRows,
} from "./logreg.ts";
import { FeatureStats, FIRE_THRESHOLD, type SparseCodes, UNUSED_SLOT } from "./sparse_codes.ts";
import { Rng } from "../util/rng.ts";

/** Parents sampled per SAE (paper §5.2: 100). */
export const HIERARCHY_PARENTS = 100;
/** Parents come from the most often firing fraction of features (paper §5.2: above the 50% most dense). */
export const HIERARCHY_DENSE_RATIO = 0.5;
/** Children kept per parent (paper §5.2: top-5). */
export const HIERARCHY_MAX_CHILDREN = 5;
/** A pair is hierarchical when parent and child are among this many closest decoder rows to d*_c (paper §5.2). */
export const HIERARCHY_TOP_FEATURES = 5;
/** MCS candidates per parent before the count filter (ref: 20). */
export const HIERARCHY_MCS_CANDIDATES = 20;
/** Children firing on fewer tokens are skipped (ref: 100). */
export const HIERARCHY_MIN_CHILD_COUNT = 100;
/** Probes trained in one GPU fit (bounds the label buffer N×P). */
const PROBES_PER_FIT = 128;

/** Settings of the hierarchy metric; every field has the paper's/reference's default. */
export interface HierarchyOptions {
  nParents: number;
  denseRatio: number;
  maxChildren: number;
  topFeatures: number;
  mcsCandidates: number;
  minChildCount: number;
  variant: McsVariant;
  seed: number;
  probe: LogRegOptions;
}

/** Defaults of the hierarchy metric. */
export const DEFAULT_HIERARCHY: HierarchyOptions = {
  nParents: HIERARCHY_PARENTS,
  denseRatio: HIERARCHY_DENSE_RATIO,
  maxChildren: HIERARCHY_MAX_CHILDREN,
  topFeatures: HIERARCHY_TOP_FEATURES,
  mcsCandidates: HIERARCHY_MCS_CANDIDATES,
  minChildCount: HIERARCHY_MIN_CHILD_COUNT,
  variant: PAPER_MCS,
  seed: 0,
  probe: DEFAULT_LOGREG,
};

/** What the metric needs: activations, their codes, the decoder, and the tree if any. */
export interface HierarchyInput {
  /** Model activations [T, d] the probes train on. */
  x: Float32Array;
  /** Codes of the same T tokens. */
  codes: SparseCodes;
  /** Decoder rows [n, d]. */
  decW: Float32Array;
  n: number;
  d: number;
  /** Tree SAE structure: parent → children (treeChildren()); absent for other SAEs. */
  tree?: Map<number, number[]>;
}

/** One evaluated parent–child pair. */
export interface PairScore {
  parent: number;
  child: number;
  /** S_cov(p, c), Eq. 4. */
  coverage: number;
  /** MCS(p, c) in the chosen variant. */
  mcs: number;
  /** d*_c · d_p and d*_c · d_c (cosines). */
  cosParent: number;
  cosChild: number;
  /** S_res(p, c) = min(cosChild, cosParent), Eq. 5. */
  sRes: number;
  /** Both parent and child among the top features by cosine with d*_c. */
  hierarchical: boolean;
}

/** Summary of one procedure (MCS or tree). */
export interface ProcedureResult {
  pairs: number;
  hierarchicalPairs: number;
  /** hierarchicalPairs / pairs (NaN-free: 0 when there is no pair). */
  score: number;
  meanSRes: number;
  meanCoverage: number;
  pairScores: PairScore[];
}

/** Hierarchy metric result. */
export interface HierarchyResult {
  parents: number[];
  mcs: ProcedureResult;
  /** Only for a Tree SAE. */
  tree?: ProcedureResult;
  options: HierarchyOptions;
}

/** Probe labels [T, P]: 1 where child c_j fires on token t. */
export function childLabels(codes: SparseCodes, children: number[]): Float32Array {
  const P = children.length;
  const col = new Map<number, number[]>();
  children.forEach((c, j) => {
    const list = col.get(c) ?? [];
    list.push(j);
    col.set(c, list);
  });
  const labels = new Float32Array(codes.rows * P);
  for (let b = 0; b < codes.rows; b++) {
    for (let s = 0; s < codes.k; s++) {
      const f = codes.idx[b * codes.k + s];
      if (f === UNUSED_SLOT || !(codes.val[b * codes.k + s] > FIRE_THRESHOLD)) continue;
      for (const j of col.get(f) ?? []) labels[b * P + j] = 1;
    }
  }
  return labels;
}

/** Unit probe directions d*_c [P, d] for `children`, fitted in chunks (GPU when given). */
export async function childDirections(
  gpu: Gpu | null,
  x: Float32Array,
  codes: SparseCodes,
  children: number[],
  d: number,
  probe: Partial<LogRegOptions> = {},
): Promise<Float32Array> {
  const T = codes.rows;
  const out = new Float32Array(children.length * d);
  for (let start = 0; start < children.length; start += PROBES_PER_FIT) {
    const chunk = children.slice(start, start + PROBES_PER_FIT);
    const labels = childLabels(codes, chunk);
    const fit = gpu
      ? await fitLogRegGpu(gpu, x, labels, T, d, chunk.length, probe)
      : fitLogRegReference(x, labels, T, d, chunk.length, probe);
    out.set(fit.weights, start * d);
  }
  return unitRows(out, children.length, d);
}

/** Copy of `m` [rows, d] with every row scaled to unit L2 norm (zero rows stay zero). */
export function unitRows(m: Float32Array, rows: number, d: number): Float32Array {
  const out = new Float32Array(m);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += out[r * d + i] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let i = 0; i < d; i++) out[r * d + i] *= inv;
  }
  return out;
}

/** S_res(p, c) = min(d*·d_c, d*·d_p) for unit d* and decoder rows (Eq. 5). */
export function reconstructionScore(
  direction: Float32Array,
  decParent: Float32Array,
  decChild: Float32Array,
): number {
  const cos = (a: Float32Array, b: Float32Array) => {
    let ab = 0, aa = 0, bb = 0;
    for (let i = 0; i < a.length; i++) {
      ab += a[i] * b[i];
      aa += a[i] * a[i];
      bb += b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
  };
  return Math.min(cos(direction, decChild), cos(direction, decParent));
}

/**
 * Indices of the `top` largest values of column `col` of values [n, stride] (ties → lower
 * index), by one linear pass with a small sorted list (top is 5 in the metric).
 */
export function topIndices(
  values: Float32Array,
  stride: number,
  col: number,
  n: number,
  top: number,
): number[] {
  const best: number[] = [];
  for (let f = 0; f < n; f++) {
    const v = values[f * stride + col];
    if (best.length === top && !(v > values[best[top - 1] * stride + col])) continue;
    let at = best.length;
    while (at > 0 && v > values[best[at - 1] * stride + col]) at--;
    best.splice(at, 0, f);
    if (best.length > top) best.pop();
  }
  return best;
}

/** The ⌊n·ratio⌋ most often firing features, most frequent first (ties → lower index). */
export function densestFeatures(stats: FeatureStats, ratio: number): number[] {
  const order = Array.from({ length: stats.n }, (_, f) => f);
  order.sort((a, b) => stats.count[b] - stats.count[a] || a - b);
  return order.slice(0, Math.floor(stats.n * ratio));
}

/** `k` distinct items of `pool`, seeded (partial Fisher–Yates). */
export function sampleDistinct(pool: number[], k: number, seed: number): number[] {
  const a = [...pool];
  const rng = new Rng(seed);
  const m = Math.min(k, a.length);
  for (let i = 0; i < m; i++) {
    const j = i + rng.int(a.length - i);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, m);
}

/** Run the hierarchy metric of §5.2 (both procedures for a Tree SAE). Seeded and deterministic. */
export async function hierarchyMetric(
  gpu: Gpu | null,
  input: HierarchyInput,
  options: Partial<HierarchyOptions> = {},
): Promise<HierarchyResult> {
  const o: HierarchyOptions = { ...DEFAULT_HIERARCHY, ...options };
  const { x, codes, decW, n, d, tree } = input;
  if (x.length !== codes.rows * d) {
    throw new RangeError(`hierarchy: x has ${x.length} values, expected ${codes.rows}×${d}`);
  }
  const stats = new FeatureStats(n);
  stats.add(codes);
  const parents = sampleDistinct(densestFeatures(stats, o.denseRatio), o.nParents, o.seed)
    .sort((a, b) => a - b);
  const co = await coactivationStats(gpu, [codes], Uint32Array.from(parents), n);

  const selected: { parent: number; pi: number; mcs: number[]; tree: number[] }[] = [];
  parents.forEach((parent, pi) => {
    const mcsAll = topChildren(co, stats, pi, { variant: o.variant, top: o.mcsCandidates })
      .map((s) => s.child)
      .filter((c) => stats.count[c] >= o.minChildCount);
    let keep = Math.min(o.maxChildren, mcsAll.length);
    let treeKids: number[] = [];
    if (tree) {
      treeKids = (tree.get(parent) ?? []).filter((c) => stats.count[c] >= o.minChildCount);
      keep = Math.min(keep, treeKids.length);
      treeKids = treeKids.slice(0, keep);
    }
    selected.push({ parent, pi, mcs: mcsAll.slice(0, keep), tree: treeKids });
  });

  // One probe per (parent, child) entry, as in the reference (a child shared by two
  // parents is probed twice with identical labels; identical fits, harmless).
  const probeChildren = selected.flatMap((s) => [...s.mcs, ...s.tree]);
  const dirs = await childDirections(gpu, x, codes, probeChildren, d, { ...o.probe, seed: o.seed });
  const decUnit = unitRows(decW, n, d);
  const P = probeChildren.length;
  const sims = P > 0 ? await projectRows(gpu, decUnit, dirs, n, P, d) : new Float32Array(0); // [n, P]

  const results = { mcs: [] as PairScore[], tree: [] as PairScore[] };
  let j = 0;
  for (const s of selected) {
    for (const key of ["mcs", "tree"] as const) {
      for (const child of s[key]) {
        const top = topIndices(sims, P, j, n, o.topFeatures);
        const cosParent = sims[s.parent * P + j];
        const cosChild = sims[child * P + j];
        results[key].push({
          parent: s.parent,
          child,
          coverage: coverageScore(co, stats, s.pi, child),
          mcs: mcsScore(co, stats, s.pi, child, o.variant),
          cosParent,
          cosChild,
          sRes: Math.min(cosParent, cosChild),
          hierarchical: top.includes(s.parent) && top.includes(child),
        });
        j++;
      }
    }
  }
  const summary = (pairs: PairScore[]): ProcedureResult => {
    const hits = pairs.filter((p) => p.hierarchical).length;
    const mean = (f: (p: PairScore) => number) =>
      pairs.length ? pairs.reduce((a, p) => a + f(p), 0) / pairs.length : 0;
    return {
      pairs: pairs.length,
      hierarchicalPairs: hits,
      score: pairs.length ? hits / pairs.length : 0,
      meanSRes: mean((p) => p.sRes),
      meanCoverage: mean((p) => p.coverage),
      pairScores: pairs,
    };
  };
  return {
    parents,
    mcs: summary(results.mcs),
    ...(tree ? { tree: summary(results.tree) } : {}),
    options: o,
  };
}
