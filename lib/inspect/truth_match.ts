/**
 * Synthetic datasets: which true feature each learned feature stands for. The Hungarian
 * matching of lib/eval/ground_truth.ts pairs true and learned features by decoder cosine;
 * a learned feature left out of the matching (n > m) is shown with its most similar true
 * feature, flagged as unmatched. Also lists the true features active on a row.
 */
import { cosineMatrix, matchFeatures } from "../eval/ground_truth.ts";
import type { Truth } from "../synth/truth.ts";

/** The true feature behind each learned feature. */
export interface TruthMatch {
  /** Per learned feature: true feature index (−1 when m = 0) [n]. */
  trueOf: Int32Array;
  /** Cosine between the learned decoder row and that true direction [n]. */
  cosine: Float32Array;
  /** 1 where the pair is part of the Hungarian matching [n]. */
  matched: Uint8Array;
  /** Path of each true feature in the toy tree (e.g. "2.1"). */
  paths: string[];
}

/** Match decoder rows decW [n, d] to the truth. */
export function matchTruth(decW: Float32Array, d: number, truth: Truth): TruthMatch {
  const n = decW.length / d;
  const m = truth.features;
  const trueOf = new Int32Array(n).fill(-1);
  const cosine = new Float32Array(n);
  const matched = new Uint8Array(n);
  const cos = cosineMatrix(truth.directions, m, decW, n, d);
  for (let f = 0; f < n; f++) {
    for (let t = 0; t < m; t++) {
      if (trueOf[f] < 0 || cos[t * n + f] > cosine[f]) {
        trueOf[f] = t;
        cosine[f] = cos[t * n + f];
      }
    }
  }
  const { match } = matchFeatures(decW, truth.directions, d);
  match.forEach((f, t) => {
    if (f < 0) return;
    trueOf[f] = t;
    cosine[f] = cos[t * n + f];
    matched[f] = 1;
  });
  return { trueOf, cosine, matched, paths: truth.json.paths.map(shortPath) };
}

/** "root.children[0].children[2]" → "0.2" (the toy tree's JSON path as child indices). */
export function shortPath(path: string): string {
  const s = path.replace(/^root\.?/, "").replace(/children\[(\d+)\]/g, "$1");
  return s === "" ? "root" : s;
}

/** True features active on `row` of an activity bitset [rows, W]. */
export function activeTrueFeatures(
  activity: Uint8Array,
  width: number,
  m: number,
  row: number,
): number[] {
  const out: number[] = [];
  for (let t = 0; t < m; t++) {
    if (activity[row * width + (t >> 3)] & (1 << (t & 7))) out.push(t);
  }
  return out;
}

/** "true 7 (path 2.1, cos 0.97)" or "… unmatched" for display. */
export function describeMatch(tm: TruthMatch, f: number): string {
  const t = tm.trueOf[f];
  if (t < 0) return "no true features";
  const tag = tm.matched[f] ? "" : ", unmatched: nearest";
  return `true ${t} (path ${tm.paths[t]}, cos ${tm.cosine[f].toFixed(2)}${tag})`;
}

/** Whether true feature `a` is an ancestor of true feature `b` in the truth's tree (`parents` [m], −1 top). */
export function isTrueAncestor(parents: Int32Array, a: number, b: number): boolean {
  if (a < 0 || b < 0) return false;
  for (let p = parents[b]; p >= 0; p = parents[p]) if (p === a) return true;
  return false;
}
