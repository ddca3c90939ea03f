/**
 * Seeded initialisation (DESIGN §4): decoder rows N(0,1) then unit norm, encoder tied
 * (encW = decW), the initial tree (balanced or uniform random, SaeConfig.initTree), and the
 * geometric median (Weiszfeld) that b_dec takes from the first standardised batch.
 * Legend: n = features, d = d_in, N = points.
 */
import type { SaeConfig, TreeInit } from "../config.ts";
import { layerOffsets, numFeatures } from "../config.ts";
import { Rng } from "../../util/rng.ts";
import { GEOMEDIAN_MAX_ITERS, GEOMEDIAN_TOL } from "./constants.ts";
import { renormRows } from "./optim.ts";

/** Initial parameters; bDec is zero until the first batch sets it (geometric median). */
export interface InitParams {
  /** [n, d] encoder rows (a copy of decW). */
  encW: Float32Array;
  /** [n, d] unit-norm decoder rows. */
  decW: Float32Array;
  /** [d] zeros. */
  bDec: Float32Array;
  /** tree: Int32Array [s_l] per layer, values in [0, o_l] (o_l = root); other archs: []. */
  parents: Int32Array[];
  /** RNG state after initialisation (the trainer continues from it). */
  rngState: number;
}

/**
 * Draw the initial parameters from `config.seed`. Draw order (fixed, for reproducible
 * runs on every engine): decW row-major normals, then tree parents layer by layer.
 */
export function initParams(config: SaeConfig): InitParams {
  const rng = new Rng(config.seed);
  const n = numFeatures(config);
  const d = config.dIn;
  const decW = rng.fillNormal(new Float32Array(n * d));
  renormRows(decW, n, d);
  const encW = decW.slice();
  const parents = config.arch === "tree"
    ? initParents(config.layers, rng, config.initTree ?? "balanced")
    : [];
  return { encW, decW, bDec: new Float32Array(d), parents, rngState: rng.state };
}

/**
 * Initial tree parents. Layer 0 hangs from the root (0). Layer l ≥ 1 with `balanced`: child i
 * goes to earlier feature ⌊i·o_l/s_l⌋, so the o_l earlier features get equal shares (±1) in
 * contiguous blocks and the root none — what Algorithm 1 deals with equal capacities, with the
 * root's optional quota (App. G) at zero; it draws nothing from `rng`. With `random`: each
 * child's parent is uniform over [0, o_l] (o_l = root).
 */
export function initParents(layers: number[], rng: Rng, mode: TreeInit = "balanced"): Int32Array[] {
  const off = layerOffsets({ layers });
  return layers.map((s, l) => {
    const p = new Int32Array(s);
    if (l === 0) return p;
    for (let i = 0; i < s; i++) {
      p[i] = mode === "random" ? rng.int(off[l] + 1) : Math.floor((i * off[l]) / s);
    }
    return p;
  });
}

/**
 * Geometric median of points [N, d] by Weiszfeld's iteration, starting at the mean; stops
 * after GEOMEDIAN_MAX_ITERS or when the update moves less than GEOMEDIAN_TOL times the
 * mean distance of the points to their mean. A point that coincides with the estimate
 * gets weight 1/1e-12 instead of 1/0.
 */
export function geometricMedian(points: Float32Array, N: number, d: number): Float32Array {
  const y = new Float64Array(d);
  for (let i = 0; i < N; i++) for (let j = 0; j < d; j++) y[j] += points[i * d + j] / N;
  let scale = 0;
  for (let i = 0; i < N; i++) scale += Math.sqrt(dist2(points, i, y, d)) / N;
  const next = new Float64Array(d);
  for (let it = 0; it < GEOMEDIAN_MAX_ITERS; it++) {
    next.fill(0);
    let wsum = 0;
    for (let i = 0; i < N; i++) {
      const w = 1 / Math.max(Math.sqrt(dist2(points, i, y, d)), 1e-12);
      wsum += w;
      for (let j = 0; j < d; j++) next[j] += w * points[i * d + j];
    }
    let shift = 0;
    for (let j = 0; j < d; j++) {
      next[j] /= wsum;
      shift += (next[j] - y[j]) ** 2;
      y[j] = next[j];
    }
    if (Math.sqrt(shift) < GEOMEDIAN_TOL * scale) break;
  }
  return Float32Array.from(y);
}

function dist2(points: Float32Array, i: number, y: Float64Array, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += (points[i * d + j] - y[j]) ** 2;
  return s;
}
