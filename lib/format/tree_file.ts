/**
 * tree.json: the Tree SAE's structure beside an exported SAELens folder (SAELens has no
 * place for it). Format:
 *   { "format": "arbor-tree", "version": 1,
 *     "features_per_layer": [s_0, ...], "k_per_layer": [k_0, ...],
 *     "parents": [[...s_0 values], [...s_1 values], ...] }
 * Features are numbered globally (layer l spans [o_l, o_l + s_l), o_l = Σ_{t<l} s_t);
 * parents[l][i] is the global index of feature o_l + i's parent, or o_l for the root
 * (the reference checkpoint's parent_index_l convention; layer 0 is all 0 = root).
 */
import { DataError } from "../errors.ts";
import { makeTree } from "../tree/structure.ts";
import type { JsonFile } from "./json_file.ts";

/** Format tag of tree.json. */
export const TREE_FORMAT = "arbor-tree";
/** Version of tree.json. */
export const TREE_VERSION = 1;
/** File name of the tree beside an exported SAE. */
export const TREE_FILE = "tree.json";

/** The JSON object of a tree. */
export function treeJson(
  layers: number[],
  kPerLayer: number[],
  parents: Int32Array[],
): Record<string, unknown> {
  return {
    format: TREE_FORMAT,
    version: TREE_VERSION,
    features_per_layer: layers,
    k_per_layer: kPerLayer,
    parents: parents.map((p) => Array.from(p)),
  };
}

/** Parse and validate a tree.json object; errors name the file and field. */
export function parseTreeJson(
  f: JsonFile,
  expect: { layers: number[]; kPerLayer: number[] },
): Int32Array[] {
  if (f.raw.format !== TREE_FORMAT || f.raw.version !== TREE_VERSION) {
    throw new DataError(
      `${f.path}: not an Arbor tree file (field "format" must be "${TREE_FORMAT}" and ` +
        `"version" ${TREE_VERSION}, got ${JSON.stringify(f.raw.format)} / ${
          JSON.stringify(f.raw.version)
        })`,
    );
  }
  const layers = f.intList("features_per_layer", 1);
  const kPerLayer = f.intList("k_per_layer", 1);
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
  if (!same(layers, expect.layers) || !same(kPerLayer, expect.kPerLayer)) {
    throw new DataError(
      `${f.path}: features_per_layer [${layers}] / k_per_layer [${kPerLayer}] disagree with ` +
        `cfg.json ([${expect.layers}] / [${expect.kPerLayer}])`,
    );
  }
  const raw = f.raw.parents;
  if (!Array.isArray(raw) || raw.length !== layers.length) {
    throw new DataError(
      `${f.path}: field "parents" must hold one list per layer (${layers.length})`,
    );
  }
  const parents = raw.map((p, l) => {
    if (!Array.isArray(p) || !p.every((v) => Number.isInteger(v))) {
      throw new DataError(`${f.path}: field "parents"[${l}] must be a list of integers`);
    }
    return Int32Array.from(p as number[]);
  });
  return makeTree(layers, parents, { kPerLayer, source: f.path }).parents;
}
