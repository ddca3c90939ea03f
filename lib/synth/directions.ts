/**
 * True feature directions of the synthetic benchmark, with ε-mixing.
 *
 * Shapes: d = d_in, m = number of true (read-out) features. Output: directions [m, d]
 * row-major, every row unit-norm and centred (coordinates sum to 0, so the per-token
 * standardisation of the SAE contract — subtract the mean over dimensions — never
 * rotates a feature direction). m may exceed d (superposition).
 *
 * Construction, parents before children (pre-order), all vectors ⟂ 1 = (1,…,1):
 * - top-level feature f:  v_f = normalize(center(g)),  g ~ N(0, I_d).
 * - children of feature p (one sibling group G, |G| ≥ 1), parent direction v_p:
 *     s_G = shared sibling direction: random, orthogonalised against {1, v_p}, unit;
 *     u_c = private direction: random, orthogonalised against {1, v_p, s_G, u of the
 *           earlier siblings of G}, unit (the sibling part is dropped only when the
 *           group no longer fits in d dimensions, see `fitsExactly`);
 *     w_c = √εs · s_G + √(1−εs) · u_c        (εs = siblingEpsilon; w_c = u_c when |G| = 1)
 *     v_c = εp · v_p + √(1−εp²) · w_c         (εp = epsilon)
 *   so exactly:  cos(v_c, v_p) = εp   and   cos(v_c, v_c') = εp² + (1−εp²)·εs  for siblings.
 *   Rows are renormalised after the f32 cast.
 * Top-level features get no sibling mixing (their "parent" is the always-on root, which
 * has no direction).
 */
import { Rng } from "../util/rng.ts";
import type { FeatureTree } from "./tree.ts";

/** ε-mixing settings. */
export interface MixingParams {
  /** Cosine between a child's direction and its parent's (εp, in [0, 1)). */
  epsilon: number;
  /** Share of a common direction among siblings (εs, in [0, 1)): sibling cosine gain. */
  siblingEpsilon: number;
}

/** The exact cosines the construction produces: child–parent and sibling–sibling. */
export function expectedCosines(mix: MixingParams): { childParent: number; siblings: number } {
  const ep = mix.epsilon;
  return { childParent: ep, siblings: ep * ep + (1 - ep * ep) * mix.siblingEpsilon };
}

/**
 * Whether sibling groups are small enough for exact orthogonalisation in d dims:
 * each group needs its siblings + {1, parent, shared} ≤ d.
 */
export function fitsExactly(tree: FeatureTree, dIn: number): boolean {
  const sizes = new Map<number, number>();
  for (let f = 0; f < tree.parents.length; f++) {
    const p = tree.parents[f];
    if (p >= 0) sizes.set(p, (sizes.get(p) ?? 0) + 1);
  }
  for (const n of sizes.values()) if (n + 3 > dIn) return false;
  return true;
}

/** Salt of the direction stream, distinct from the SAE initialisation's plain `Rng(seed)`. */
const DIRECTION_STREAM = 0x85ebca6b;

/** Draw the true directions [m, d] for a tree (seeded; see the module doc for the formula). */
export function buildDirections(
  tree: FeatureTree,
  dIn: number,
  mix: MixingParams,
  seed: number,
): Float32Array {
  const m = tree.features.length;
  const d = dIn;
  // A stream of its own: an SAE initialised with Rng(seed) must not start on the true directions.
  const rng = new Rng((seed ^ DIRECTION_STREAM) >>> 0);
  const dirs = new Float64Array(m * d);
  const row = (f: number) => dirs.subarray(f * d, (f + 1) * d);
  const ones = new Float64Array(d).fill(1 / Math.sqrt(d));

  // Sibling groups keyed by parent feature; members in feature (pre-)order.
  const groups = new Map<number, number[]>();
  for (let f = 0; f < m; f++) {
    const p = tree.parents[f];
    if (p < 0) {
      const v = row(f);
      randomUnitOrthogonal(rng, v, [ones]);
    } else {
      let g = groups.get(p);
      if (!g) groups.set(p, g = []);
      g.push(f);
    }
  }
  // Pre-order numbering puts a parent before its children, so processing groups in
  // increasing parent index always finds the parent's direction already built.
  const parentsInOrder = [...groups.keys()].sort((a, b) => a - b);
  const ep = mix.epsilon;
  const es = mix.siblingEpsilon;
  for (const p of parentsInOrder) {
    const members = groups.get(p)!;
    const vp = row(p);
    const shared = new Float64Array(d);
    randomUnitOrthogonal(rng, shared, [ones, vp]);
    const privates: Float64Array[] = [];
    for (const c of members) {
      const u = new Float64Array(d);
      const against: Float64Array[] = [ones, vp, shared];
      if (against.length + privates.length < d) against.push(...privates);
      randomUnitOrthogonal(rng, u, against);
      privates.push(u);
      const useShared = members.length > 1 && es > 0;
      const a = useShared ? Math.sqrt(es) : 0;
      const b = useShared ? Math.sqrt(1 - es) : 1;
      const cp = Math.sqrt(1 - ep * ep);
      const v = row(c);
      for (let j = 0; j < d; j++) v[j] = ep * vp[j] + cp * (a * shared[j] + b * u[j]);
    }
  }
  const out = new Float32Array(m * d);
  for (let f = 0; f < m; f++) {
    const v = row(f);
    const norm = Math.hypot(...v);
    for (let j = 0; j < d; j++) out[f * d + j] = v[j] / norm;
  }
  // One more pass in f32 so the stored rows are unit-norm to f32 precision.
  for (let f = 0; f < m; f++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += out[f * d + j] * out[f * d + j];
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < d; j++) out[f * d + j] *= inv;
  }
  return out;
}

/**
 * Fill `v` with a random unit vector orthogonal to the given orthonormal-or-unit vectors
 * (modified Gram-Schmidt, applied twice for stability; redrawn if it degenerates).
 */
function randomUnitOrthogonal(rng: Rng, v: Float64Array, against: Float64Array[]): void {
  for (let attempt = 0; attempt < 100; attempt++) {
    for (let j = 0; j < v.length; j++) v[j] = rng.normal();
    for (let pass = 0; pass < 2; pass++) {
      for (const a of against) {
        let dot = 0;
        let aa = 0;
        for (let j = 0; j < v.length; j++) {
          dot += v[j] * a[j];
          aa += a[j] * a[j];
        }
        const k = dot / aa;
        for (let j = 0; j < v.length; j++) v[j] -= k * a[j];
      }
    }
    let s = 0;
    for (let j = 0; j < v.length; j++) s += v[j] * v[j];
    if (s > 1e-6) {
      const inv = 1 / Math.sqrt(s);
      for (let j = 0; j < v.length; j++) v[j] *= inv;
      return;
    }
  }
  throw new Error(
    `cannot draw a direction orthogonal to ${against.length} vectors in ${v.length} dims`,
  );
}
