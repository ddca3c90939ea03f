/**
 * The Tree SAE's tree (paper §4, "Tree Structure"): privilege layers of sizes `s_l`, and for
 * every feature of layer `l` the index of its parent among all features of earlier layers, or
 * the imaginary always-active root.
 *
 * Data contract (docs: /tmp/arbor_sae_math.md, DESIGN §4): features are numbered globally,
 * layer `l` spans `[o_l, o_l + s_l)` with `o_l = Σ_{t<l} s_t`. `parents[l]` is an Int32Array
 * [s_l] with values in `[0, o_l]`; the value `o_l` means "root" (so layer 0's parents are all
 * 0 = root). This is exactly the reference checkpoint's `parent_index_l` (root = layer start),
 * which only stores layers l ≥ 1.
 */
import { ArborError, DataError } from "../errors.ts";

/** A tree: layer sizes, their offsets, and the parent of every feature per layer. */
export interface TreeStructure {
  /** `s_l`: number of features in each privilege layer. */
  layers: number[];
  /** `o_l = Σ_{t<l} s_t`: global index of layer l's first feature (also its root value). */
  offsets: number[];
  /** Total features `n = Σ s_l`. */
  n: number;
  /** `parents[l][i]` ∈ [0, o_l]: global parent index of feature `o_l + i`; `o_l` = root. */
  parents: Int32Array[];
}

/** Source of uniform integers (structurally matches `Rng` of lib/util/rng.ts). */
export interface IntSource {
  /** Uniform integer in [0, n). */
  int(n: number): number;
}

/** Offsets `o_l` of each layer (exclusive prefix sums of the sizes). */
export function layerOffsets(layers: readonly number[]): number[] {
  const out: number[] = [];
  let o = 0;
  for (const s of layers) {
    out.push(o);
    o += s;
  }
  return out;
}

/** Which layer global feature `f` belongs to (linear scan: L is tiny). */
export function layerOf(offsets: readonly number[], f: number): number {
  let l = 0;
  while (l + 1 < offsets.length && f >= offsets[l + 1]) l++;
  return l;
}

/** Per-feature layer index (Uint8Array [n]); lets hot loops avoid `layerOf`. */
export function layerOfEachFeature(layers: readonly number[]): Uint8Array {
  const n = layers.reduce((a, b) => a + b, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (let l = 0; l < layers.length; l++) {
    out.fill(l, o, o + layers[l]);
    o += layers[l];
  }
  return out;
}

/**
 * Check layer sizes and per-layer k against each other and the dictionary size; throws an
 * ArborError naming the field and the fix.
 */
export function validateLayerConfig(
  layers: readonly number[],
  opts: { kPerLayer?: readonly number[]; n?: number; field?: string } = {},
): void {
  const field = opts.field ?? "layers";
  if (layers.length === 0) throw new ArborError(`${field}: a tree needs at least one layer size`);
  if (layers.length > 255) {
    throw new ArborError(`${field}: ${layers.length} layers; at most 255 are supported`);
  }
  layers.forEach((s, l) => {
    if (!Number.isInteger(s) || s < 1) {
      throw new ArborError(
        `${field}[${l}] = ${s}: every layer size must be a positive integer`,
      );
    }
  });
  const sum = layers.reduce((a, b) => a + b, 0);
  if (opts.n !== undefined && sum !== opts.n) {
    throw new ArborError(
      `${field}: layer sizes [${
        layers.join(",")
      }] sum to ${sum} but the dictionary has n = ${opts.n} ` +
        `features; make the sizes sum to n (or change n)`,
    );
  }
  const k = opts.kPerLayer;
  if (k === undefined) return;
  if (k.length !== layers.length) {
    throw new ArborError(
      `k per layer [${
        k.join(",")
      }] has ${k.length} entries but ${field} has ${layers.length} layers; ` +
        `give one k per layer`,
    );
  }
  k.forEach((kl, l) => {
    if (!Number.isInteger(kl) || kl < 0) {
      throw new ArborError(`k per layer[${l}] = ${kl}: must be a non-negative integer`);
    }
    if (kl > layers[l]) {
      throw new ArborError(
        `k per layer[${l}] = ${kl} exceeds the layer's size s_${l} = ${layers[l]}; ` +
          `lower k_${l} or enlarge layer ${l}`,
      );
    }
  });
}

/**
 * Validate a tree: sizes consistent with `n` and `kPerLayer`, one parent array per layer of the
 * right length, and every parent an earlier feature or the root. Errors name `source` (a file or
 * flag), the layer, the child and the bad value.
 */
export function validateTree(
  tree: TreeStructure,
  opts: { kPerLayer?: readonly number[]; n?: number; source?: string } = {},
): void {
  const where = opts.source ? `${opts.source}: ` : "";
  try {
    validateLayerConfig(tree.layers, { kPerLayer: opts.kPerLayer, n: opts.n });
  } catch (e) {
    throw new ArborError(where + (e as Error).message);
  }
  const offsets = layerOffsets(tree.layers);
  if (tree.offsets.length !== offsets.length || tree.offsets.some((o, l) => o !== offsets[l])) {
    throw new ArborError(
      `${where}tree offsets [${tree.offsets.join(",")}] do not match layer sizes ` +
        `[${tree.layers.join(",")}] (expected [${offsets.join(",")}])`,
    );
  }
  const n = tree.layers.reduce((a, b) => a + b, 0);
  if (tree.n !== n) throw new ArborError(`${where}tree n = ${tree.n} but layer sizes sum to ${n}`);
  if (tree.parents.length !== tree.layers.length) {
    throw new ArborError(
      `${where}tree has ${tree.layers.length} layers but ${tree.parents.length} parent arrays`,
    );
  }
  for (let l = 0; l < tree.layers.length; l++) {
    const p = tree.parents[l];
    const name = parentKey(l);
    if (p.length !== tree.layers[l]) {
      throw new DataError(
        `${where}${name} has ${p.length} entries but layer ${l} has ${tree.layers[l]} features`,
      );
    }
    const root = offsets[l];
    for (let i = 0; i < p.length; i++) {
      const v = p[i];
      if (Number.isInteger(v) && v >= 0 && v <= root) continue;
      throw new DataError(where + describeBadParent(tree.layers, offsets, l, i, v));
    }
  }
}

function describeBadParent(
  layers: readonly number[],
  offsets: readonly number[],
  l: number,
  i: number,
  v: number,
): string {
  const root = offsets[l];
  const n = layers.reduce((a, b) => a + b, 0);
  const allowed = l === 0
    ? `layer 0 hangs from the root only, so its parents must all be 0`
    : `a parent must be an earlier feature (0..${root - 1}) or the root (${root})`;
  const head = `${parentKey(l)}[${i}] = ${v} (child feature ${root + i}, layer ${l})`;
  if (!Number.isInteger(v) || v < 0 || v >= n) {
    return `${head} is out of range; ${allowed}`;
  }
  const pl = layerOf(offsets, v);
  const what = pl === l ? "its own layer" : `a later layer (layer ${pl})`;
  return `${head} points at ${what}; ${allowed}`;
}

/** Name of a layer's parent array in checkpoints (the reference's `parent_index_l`). */
export function parentKey(l: number): string {
  return `parent_index_${l}`;
}

/** Build a tree from sizes and parents, validating it (see `validateTree`). */
export function makeTree(
  layers: readonly number[],
  parents: Int32Array[],
  opts: { kPerLayer?: readonly number[]; n?: number; source?: string } = {},
): TreeStructure {
  const tree: TreeStructure = {
    layers: [...layers],
    offsets: layerOffsets(layers),
    n: layers.reduce((a, b) => a + b, 0),
    parents,
  };
  validateTree(tree, opts);
  return tree;
}

/**
 * Initial parents (issue #4, ref): each feature of layer l ≥ 1 draws its parent uniformly
 * from the o_l earlier features and the root (o_l + 1 choices); layer 0 is all root (0).
 * Draws in layer order, then feature order, one `rng.int` per child.
 */
export function initialParents(layers: readonly number[], rng: IntSource): Int32Array[] {
  const offsets = layerOffsets(layers);
  return layers.map((s, l) => {
    const p = new Int32Array(s);
    if (l > 0) { for (let i = 0; i < s; i++) p[i] = rng.int(offsets[l] + 1); }
    return p;
  });
}

/** A tree with seeded uniform initial parents (see `initialParents`). */
export function initialTree(layers: readonly number[], rng: IntSource): TreeStructure {
  validateLayerConfig(layers);
  return makeTree(layers, initialParents(layers, rng));
}

/** Deep copy of a tree (parents copied; safe to mutate). */
export function cloneTree(tree: TreeStructure): TreeStructure {
  return {
    layers: [...tree.layers],
    offsets: [...tree.offsets],
    n: tree.n,
    parents: tree.parents.map((p) => p.slice()),
  };
}

/**
 * `k_l`: number of children each candidate parent has in layer l: Uint32Array [o_l + 1],
 * entry o_l is the root.
 */
export function childCounts(tree: TreeStructure, l: number): Uint32Array {
  const counts = new Uint32Array(tree.offsets[l] + 1);
  for (const p of tree.parents[l]) counts[p]++;
  return counts;
}

/** Children of every candidate parent of layer l, as compressed lists (CSR). */
export interface ChildLists {
  /** [o_l + 2]: children of parent p are `children[start[p] .. start[p+1])`; p = o_l is root. */
  start: Uint32Array;
  /** [s_l]: local child indices (0..s_l-1) grouped by parent, ascending within a parent. */
  children: Uint32Array;
}

/** Children of each parent of layer l (counting sort, so ascending child order per parent). */
export function childLists(tree: TreeStructure, l: number): ChildLists {
  const counts = childCounts(tree, l);
  const start = new Uint32Array(counts.length + 1);
  for (let p = 0; p < counts.length; p++) start[p + 1] = start[p] + counts[p];
  const fill = start.slice(0, counts.length);
  const parents = tree.parents[l];
  const children = new Uint32Array(parents.length);
  for (let i = 0; i < parents.length; i++) children[fill[parents[i]]++] = i;
  return { start, children };
}

/** The tree's parent arrays keyed as in the checkpoint (`parent_index_l`, layers l ≥ 1 only). */
export function toCheckpointParents(tree: TreeStructure): Record<string, Int32Array> {
  const out: Record<string, Int32Array> = {};
  for (let l = 1; l < tree.layers.length; l++) out[parentKey(l)] = tree.parents[l].slice();
  return out;
}

/**
 * Rebuild and validate a tree from checkpoint tensors `parent_index_l` (l ≥ 1; any integer
 * typed array, e.g. the reference's int64 as BigInt64Array). Layer 0 is all root. `source`
 * (the file) goes into every error message.
 */
export function fromCheckpointParents(
  layers: readonly number[],
  tensors: Record<string, ArrayLike<number> | BigInt64Array | BigUint64Array>,
  opts: { kPerLayer?: readonly number[]; n?: number; source?: string } = {},
): TreeStructure {
  const where = opts.source ? `${opts.source}: ` : "";
  const offsets = layerOffsets(layers);
  const parents: Int32Array[] = [new Int32Array(layers[0] ?? 0)];
  for (let l = 1; l < layers.length; l++) {
    const t = tensors[parentKey(l)];
    if (t === undefined) {
      throw new DataError(
        `${where}missing tensor ${parentKey(l)} (the parents of tree layer ${l}); ` +
          `a ${layers.length}-layer Tree SAE checkpoint needs parent_index_1..${layers.length - 1}`,
      );
    }
    const p = new Int32Array(t.length);
    for (let i = 0; i < t.length; i++) {
      const v = Number(t[i]);
      // Check before the Int32Array store, which would wrap huge values into valid-looking ones.
      if (!(Number.isInteger(v) && v >= 0 && v <= offsets[l])) {
        throw new DataError(where + describeBadParent(layers, offsets, l, i, v));
      }
      p[i] = v;
    }
    parents.push(p);
  }
  return makeTree(layers, parents, opts);
}
