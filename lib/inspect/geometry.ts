/**
 * The child-subspace geometry of paper §6.1 (Figure 9): for a parent, take the activations
 * of tokens where its children fire (the sampled rows of each child; a row sampled for
 * several children goes to the one with the highest activation), in the space the encoder
 * reads (standardised per token, minus b_dec), fit a 2-component PCA (npm `ml-pca`), and
 * project every child's encoder vector onto the same two axes.
 * Arrows: each encoder row is normalised to unit length before projection (its length in the
 * plot shows how much of it lies in the PCA plane), then all arrows share one scale so the
 * longest reaches 90% of the farthest point — directions and relative lengths are kept.
 */
import { PCA } from "ml-pca";
import { standardize } from "../sae/reference/standardize.ts";
import type { FeatureTree } from "./structure.ts";
import type { FeatureProfile } from "./profile.ts";

/** Fraction of the farthest point's radius the longest arrow reaches. */
const ARROW_REACH = 0.9;
/** Most tokens in one plot, shared evenly by the children (PCA by SVD costs ~N²·d: ~0.6 s at d = 768). */
export const GEOMETRY_MAX_POINTS = 240;

/** A token's activation projected on the two principal axes, labelled by its child. */
export interface GeometryPoint {
  pc1: number;
  pc2: number;
  child: number;
}

/** A child's encoder vector on the same axes (scaled, see module doc). */
export interface GeometryArrow {
  pc1: number;
  pc2: number;
  child: number;
}

/** The §6.1 plot data of one parent. */
export interface ChildGeometry {
  parent: number;
  points: GeometryPoint[];
  arrows: GeometryArrow[];
  /** Fraction of the points' variance on PC1 and PC2. */
  explained: [number, number];
}

/**
 * The geometry of `parent`'s children, or a reason string when there is not enough to plot
 * (fewer than two children that fired, or fewer than three points).
 */
export function childGeometry(
  parent: number,
  tree: FeatureTree,
  profile: FeatureProfile,
  x: Float32Array,
  d: number,
  sae: { encW: Float32Array; bDec: Float32Array },
): ChildGeometry | string {
  const kids = tree.childrenOf[parent].filter((c) => profile.samples[c].rows.length > 0);
  if (kids.length < 2) return "fewer than two of its children fired on the inspected tokens";
  const owner = new Map<number, { child: number; value: number }>();
  const perChild = Math.max(2, Math.floor(GEOMETRY_MAX_POINTS / kids.length));
  for (const c of kids) {
    const s = profile.samples[c];
    s.rows.slice(0, perChild).forEach((row, i) => {
      const cur = owner.get(row);
      if (!cur || s.values[i] > cur.value) owner.set(row, { child: c, value: s.values[i] });
    });
  }
  const rows = [...owner.keys()].sort((a, b) => a - b);
  if (rows.length < 3) return "fewer than three tokens where its children fire";
  const matrix = rows.map((row) => {
    const { xs } = standardize(x.subarray(row * d, (row + 1) * d), 1, d);
    return Array.from(xs, (v, j) => v - sae.bDec[j]);
  });
  const pca = new PCA(matrix);
  const proj = pca.predict(matrix, { nComponents: 2 }).to2DArray();
  const loadings = pca.getLoadings().to2DArray().slice(0, 2);
  const explained = pca.getExplainedVariance();
  const points = rows.map((row, i) => ({
    pc1: proj[i][0],
    pc2: proj[i]?.[1] ?? 0,
    child: owner.get(row)!.child,
  }));
  const raw = kids.map((c) => {
    const e = sae.encW.subarray(c * d, (c + 1) * d);
    const norm = Math.hypot(...e) || 1;
    const dot = (axis: number[] | undefined) =>
      axis ? axis.reduce((s, a, j) => s + a * e[j], 0) / norm : 0;
    return { child: c, pc1: dot(loadings[0]), pc2: dot(loadings[1]) };
  });
  const reach = Math.max(...points.map((p) => Math.hypot(p.pc1, p.pc2)));
  const longest = Math.max(...raw.map((a) => Math.hypot(a.pc1, a.pc2)));
  const scale = longest > 0 ? (ARROW_REACH * reach) / longest : 0;
  const arrows = raw.map((a) => ({ child: a.child, pc1: a.pc1 * scale, pc2: a.pc2 * scale }));
  return { parent, points, arrows, explained: [explained[0] ?? 0, explained[1] ?? 0] };
}
