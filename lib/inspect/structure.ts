/**
 * The feature tree as `inspect` shows it: every feature's layer, parent and children.
 * Tree SAEs use their learned parents (data contract: parents[l][i] ∈ [0, o_l], o_l = root);
 * flat SAEs (topk, batchtopk, matryoshka) have no parents, so every feature is a root and
 * its "layer" is its Matryoshka group (0 for topk/batchtopk).
 */
import type { SaeConfig } from "../sae/config.ts";
import { featureLayers, layerOffsets, numFeatures } from "../sae/config.ts";
import { treeChildren } from "../eval/tree_children.ts";
import { DataError } from "../errors.ts";

/** Layer, parent and children of every feature. */
export interface FeatureTree {
  /** Number of features n. */
  n: number;
  /** Layer (tree) or group (matryoshka) of each feature [n]. */
  layerOf: Uint32Array;
  /** First feature of each layer, length L + 1. */
  offsets: number[];
  /** Parent of each feature, −1 for the root [n]. */
  parentOf: Int32Array;
  /** Direct children of each feature (global ids, ascending). */
  childrenOf: number[][];
  /** Children of the root, ascending. */
  roots: number[];
}

/** Build the view from a config and its per-layer parents ([] for flat SAEs). */
export function featureTree(config: SaeConfig, parents: Int32Array[]): FeatureTree {
  const n = numFeatures(config);
  const offsets = layerOffsets(config);
  const parentOf = new Int32Array(n).fill(-1);
  const childrenOf: number[][] = Array.from({ length: n }, () => []);
  if (config.arch === "tree") {
    for (const [p, kids] of treeChildren(config.layers, parents)) {
      childrenOf[p] = kids;
      for (const c of kids) parentOf[c] = p;
    }
  }
  const roots: number[] = [];
  for (let f = 0; f < n; f++) if (parentOf[f] < 0) roots.push(f);
  return { n, layerOf: featureLayers(config), offsets, parentOf, childrenOf, roots };
}

/** Throw a DataError unless `f` is a feature of the tree; `flag` names the option. */
export function checkFeature(tree: FeatureTree, f: number, flag: string): void {
  if (!Number.isInteger(f) || f < 0 || f >= tree.n) {
    throw new DataError(
      `${flag} ${f}: no such feature; this SAE has features 0..${tree.n - 1}`,
    );
  }
}

/** The features of the subtree under `root` (itself included), depth-first, down to `depth` levels below it. */
export function subtree(tree: FeatureTree, root: number, depth = Infinity): number[] {
  const out: number[] = [];
  const walk = (f: number, level: number) => {
    out.push(f);
    if (level >= depth) return;
    for (const c of tree.childrenOf[f]) walk(c, level + 1);
  };
  walk(root, 0);
  return out;
}

/** Ancestors of `f` from the top-level feature down to its parent. */
export function ancestors(tree: FeatureTree, f: number): number[] {
  const out: number[] = [];
  for (let p = tree.parentOf[f]; p >= 0; p = tree.parentOf[p]) out.unshift(p);
  return out;
}
