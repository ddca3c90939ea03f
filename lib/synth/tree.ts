/**
 * The ground-truth feature tree of the synthetic benchmark.
 *
 * A tree comes either from JSON in the schema of the Matryoshka-SAE toy experiments
 * (noanabeshima/matryoshka-saes `tree.schema.json`: per node `active_prob`, optional
 * `is_read_out` (default true), `mutually_exclusive_children` (default false),
 * `is_binary` (default true), `children` (default []), `id`), or from parameters
 * (`treeFromParams`: depth, branching per level, Zipf-spread firing probabilities).
 * Arbor adds two optional per-node keys for non-binary features: `magnitude_mean`
 * (default 1) and `magnitude_std` (default: the generator's `--magnitude-std`).
 *
 * Semantics (as in the toy model): `active_prob` is the probability that a node fires
 * given that its tree parent fired; a node whose parent is silent never fires. Under
 * `mutually_exclusive_children` at most one child fires: child i with probability
 * `active_prob_i`, none with 1 − Σ active_prob (so the sum must be ≤ 1). Nodes with
 * `is_read_out: false` have no direction in activation space but still gate their
 * children (the toy model's root and its "none of the above" children).
 *
 * Read-out nodes are numbered in pre-order (a node before its children), which is the
 * toy model's order; `parents[f]` is the nearest read-out ancestor of feature f, or −1.
 */
import { DataError } from "../errors.ts";

/** One node of a tree JSON file (the toy-model schema plus Arbor's magnitude keys). */
export interface TreeNodeJson {
  active_prob: number;
  is_read_out?: boolean;
  mutually_exclusive_children?: boolean;
  is_binary?: boolean;
  children?: TreeNodeJson[];
  id?: string;
  magnitude_mean?: number;
  magnitude_std?: number;
}

/** A validated tree node. */
export interface FeatureNode {
  /** Where the node sits in the JSON, e.g. `root.children[2].children[0]`. */
  path: string;
  /** Optional name from the JSON `id`. */
  id: string | undefined;
  /** P(fires | tree parent fires). */
  activeProb: number;
  /** Whether the node has a direction in activation space (is a true feature). */
  isReadOut: boolean;
  /** Binary features have magnitude exactly 1 when they fire. */
  isBinary: boolean;
  /** At most one child fires. */
  exclusiveChildren: boolean;
  /** Mean magnitude of a non-binary feature when it fires. */
  magnitudeMean: number;
  /** Magnitude standard deviation; undefined → the generator's default. */
  magnitudeStd: number | undefined;
  children: FeatureNode[];
  /** Index among read-out features (pre-order), −1 for a non-read-out node. */
  feature: number;
}

/** A validated tree with its read-out features numbered. */
export interface FeatureTree {
  root: FeatureNode;
  /** All nodes, pre-order. */
  nodes: FeatureNode[];
  /** Read-out nodes; `features[f].feature === f`. */
  features: FeatureNode[];
  /** Per feature: the nearest read-out ancestor's feature index, −1 for top-level. */
  parents: Int32Array;
  /** Per feature: number of read-out ancestors (0 = top-level). */
  levels: Int32Array;
  /** Per feature: P(fires) over all tokens, the product of `activeProb` along the path. */
  nominalRates: Float64Array;
}

/** Slack for "exclusive children's probabilities sum to at most 1" (float sums like 0.2·3+0.4). */
const PROB_SUM_SLACK = 1e-9;

const ALLOWED_KEYS = new Set([
  "active_prob",
  "is_read_out",
  "mutually_exclusive_children",
  "is_binary",
  "children",
  "id",
  "magnitude_mean",
  "magnitude_std",
]);

/**
 * Validate a tree (parsed JSON or a hand-built object) and number its features.
 * Errors name the node by path (`root.children[2].children[0]`) and the source.
 */
export function parseTree(json: unknown, source = "tree"): FeatureTree {
  const seen = new Map<object, string>();
  const ids = new Map<string, string>();
  const ancestors = new Set<object>();
  const nodes: FeatureNode[] = [];
  const features: FeatureNode[] = [];
  const parents: number[] = [];
  const levels: number[] = [];
  const rates: number[] = [];

  const fail = (path: string, what: string): never => {
    throw new DataError(`${source}: node ${path}: ${what}`);
  };

  const visit = (
    raw: unknown,
    path: string,
    parentFeature: number,
    level: number,
    rate: number,
  ): FeatureNode => {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      fail(path, `expected an object with "active_prob", got ${describe(raw)}`);
    }
    const obj = raw as Record<string, unknown>;
    if (ancestors.has(obj)) {
      fail(path, `cycle: this node is its own ancestor ${seen.get(obj)} (a tree may not loop)`);
    }
    const earlier = seen.get(obj);
    if (earlier !== undefined) {
      fail(path, `the same node object also appears at ${earlier} (each node needs one parent)`);
    }
    seen.set(obj, path);
    for (const key of Object.keys(obj)) {
      if (!ALLOWED_KEYS.has(key)) {
        fail(path, `unknown key "${key}" (allowed: ${[...ALLOWED_KEYS].join(", ")})`);
      }
    }
    if (!("active_prob" in obj)) fail(path, `missing required field "active_prob"`);
    const p = obj.active_prob;
    if (typeof p !== "number" || !Number.isFinite(p)) {
      fail(path, `active_prob must be a number in [0, 1], got ${describe(p)}`);
    }
    const activeProb = p as number;
    if (activeProb < 0 || activeProb > 1) {
      fail(path, `active_prob ${activeProb} is outside [0, 1]`);
    }
    const bool = (key: string, dflt: boolean): boolean => {
      const v = obj[key];
      if (v === undefined) return dflt;
      if (typeof v !== "boolean") fail(path, `${key} must be true or false, got ${describe(v)}`);
      return v as boolean;
    };
    const isReadOut = bool("is_read_out", true);
    const exclusiveChildren = bool("mutually_exclusive_children", false);
    const isBinary = bool("is_binary", true);
    let id: string | undefined;
    if (obj.id !== undefined) {
      if (typeof obj.id !== "string") fail(path, `id must be a string, got ${describe(obj.id)}`);
      id = obj.id as string;
      const other = ids.get(id);
      if (other !== undefined) fail(path, `duplicate id "${id}" (also used by ${other})`);
      ids.set(id, path);
    }
    const magnitudeMean = obj.magnitude_mean === undefined ? 1 : obj.magnitude_mean;
    if (
      typeof magnitudeMean !== "number" || !(magnitudeMean > 0) || !Number.isFinite(magnitudeMean)
    ) {
      fail(path, `magnitude_mean must be a finite number > 0, got ${describe(obj.magnitude_mean)}`);
    }
    const magnitudeStd = obj.magnitude_std;
    if (
      magnitudeStd !== undefined &&
      (typeof magnitudeStd !== "number" || !(magnitudeStd >= 0) || !Number.isFinite(magnitudeStd))
    ) {
      fail(path, `magnitude_std must be a finite number >= 0, got ${describe(magnitudeStd)}`);
    }
    const rawChildren = obj.children === undefined ? [] : obj.children;
    if (!Array.isArray(rawChildren)) {
      fail(path, `children must be an array of nodes, got ${describe(rawChildren)}`);
    }
    const childList = rawChildren as unknown[];
    const myRate = rate * activeProb;
    const node: FeatureNode = {
      path,
      id,
      activeProb,
      isReadOut,
      isBinary,
      exclusiveChildren,
      magnitudeMean: magnitudeMean as number,
      magnitudeStd: magnitudeStd as number | undefined,
      children: [],
      feature: -1,
    };
    nodes.push(node);
    if (isReadOut) {
      node.feature = features.length;
      features.push(node);
      parents.push(parentFeature);
      levels.push(level);
      rates.push(myRate);
    }
    ancestors.add(obj);
    const childParent = isReadOut ? node.feature : parentFeature;
    const childLevel = isReadOut ? level + 1 : level;
    childList.forEach((c, i) => {
      // Exclusive children are disjoint events, so each one's marginal rate is still
      // parentRate · p_i; independent children likewise.
      node.children.push(visit(c, `${path}.children[${i}]`, childParent, childLevel, myRate));
    });
    ancestors.delete(obj);
    if (exclusiveChildren) {
      // Checked after the children so that a child's own bad probability is named first.
      const sum = node.children.reduce((a, c) => a + c.activeProb, 0);
      if (sum > 1 + PROB_SUM_SLACK) {
        fail(
          path,
          `mutually exclusive children have active_prob summing to ${round(sum)} > 1 ` +
            `(at most one may fire, so the sum must be <= 1)`,
        );
      }
    }
    return node;
  };

  const root = visit(json, "root", -1, 0, 1);
  if (features.length === 0) {
    throw new DataError(
      `${source}: the tree has no read-out node (set "is_read_out": true on some node)`,
    );
  }
  return {
    root,
    nodes,
    features,
    parents: Int32Array.from(parents),
    levels: Int32Array.from(levels),
    nominalRates: Float64Array.from(rates),
  };
}

/**
 * P(no read-out feature fires on a token) under the tree's sampling rule, computed
 * exactly by recursion: q(node) = P(nothing read-out fires in the node's subtree | its
 * parent fired) = (1 − p) + p · [node not read-out] · Q(children), where Q is Π q(c) for
 * independent children and (1 − Σ p_c) + Σ p_c · [c not read-out] · Q(children of c)
 * for exclusive ones.
 */
export function emptyProbability(tree: FeatureTree): number {
  // P(nothing read-out fires below `node`'s children | node fired).
  const childrenQuiet = (node: FeatureNode): number => {
    if (node.exclusiveChildren) {
      let q = 1;
      for (const c of node.children) {
        q -= c.activeProb;
        if (!c.isReadOut) q += c.activeProb * childrenQuiet(c);
      }
      return Math.max(0, q);
    }
    let q = 1;
    for (const c of node.children) {
      q *= 1 - c.activeProb + (c.isReadOut ? 0 : c.activeProb * childrenQuiet(c));
    }
    return q;
  };
  const r = tree.root;
  return 1 - r.activeProb + (r.isReadOut ? 0 : r.activeProb * childrenQuiet(r));
}

/** Read and validate a tree JSON file; errors name the file and the node. */
export async function readTreeFile(file: string): Promise<FeatureTree> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new DataError(`${file}: cannot read the tree file (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new DataError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return parseTree(json, file);
}

/** Parameters of a generated tree (`treeFromParams`). */
export interface TreeParams {
  /** Children per node at each level; `branching[0]` = number of top-level features, length = depth. */
  branching: number[];
  /** Expected number of top-level features firing per token (Σ of their probabilities). */
  topMass: number;
  /** Expected number of children firing given the parent fires (≤ 1 when exclusive). */
  childMass: number;
  /** Zipf exponent: sibling i gets probability ∝ (i+1)^−zipf (0 = all equal). */
  zipf: number;
  /** Whether each node's children are mutually exclusive. */
  exclusive: boolean;
  /** Binary features (magnitude 1) or noisy magnitudes. */
  binary: boolean;
}

/** Zipf weights (i+1)^−s scaled to sum to `mass`. */
export function zipfProbs(count: number, mass: number, s: number): number[] {
  const w = Array.from({ length: count }, (_, i) => Math.pow(i + 1, -s));
  const total = w.reduce((a, b) => a + b, 0);
  return w.map((x) => (mass * x) / total);
}

/**
 * Build a tree JSON (toy-model schema) from parameters: a non-read-out root with
 * `branching[0]` top-level features, each with `branching[1]` children, and so on.
 * Throws naming the parameter when a probability would exceed 1.
 */
export function treeFromParams(p: TreeParams): TreeNodeJson {
  if (p.branching.length === 0) throw new DataError("tree params: depth must be at least 1");
  for (const b of p.branching) {
    if (!Number.isInteger(b) || b < 1) {
      throw new DataError(
        `tree params: branching must be integers >= 1, got ${p.branching.join(",")}`,
      );
    }
  }
  if (!(p.zipf >= 0)) throw new DataError(`tree params: zipf must be >= 0, got ${p.zipf}`);
  const top = zipfProbs(p.branching[0], p.topMass, p.zipf);
  if (!(top[0] <= 1) || !(p.topMass > 0)) {
    throw new DataError(
      `tree params: top-mass ${p.topMass} gives a top-level probability ${
        round(top[0])
      } outside (0, 1]; ` +
        `lower top-mass, raise zipf or add top-level features`,
    );
  }
  if (p.exclusive && p.childMass > 1) {
    throw new DataError(
      `tree params: child-mass ${p.childMass} > 1 with exclusive children (at most one fires)`,
    );
  }
  for (let l = 1; l < p.branching.length; l++) {
    const c = zipfProbs(p.branching[l], p.childMass, p.zipf);
    if (!(c[0] <= 1) || !(p.childMass > 0)) {
      throw new DataError(
        `tree params: child-mass ${p.childMass} gives a child probability ${
          round(c[0])
        } outside (0, 1]; ` +
          `lower child-mass or raise zipf`,
      );
    }
  }
  const build = (level: number, prob: number): TreeNodeJson => {
    const node: TreeNodeJson = { active_prob: prob, is_read_out: true, is_binary: p.binary };
    if (level + 1 < p.branching.length) {
      node.mutually_exclusive_children = p.exclusive;
      node.children = zipfProbs(p.branching[level + 1], p.childMass, p.zipf).map((q) =>
        build(level + 1, q)
      );
    }
    return node;
  };
  return {
    active_prob: 1,
    is_read_out: false,
    mutually_exclusive_children: false,
    children: top.map((q) => build(0, q)),
  };
}

/** Convert a validated tree back to JSON (for truth.json and `--tree` round trips). */
export function treeToJson(node: FeatureNode): TreeNodeJson {
  const out: TreeNodeJson = {
    active_prob: node.activeProb,
    is_read_out: node.isReadOut,
    mutually_exclusive_children: node.exclusiveChildren,
    is_binary: node.isBinary,
  };
  if (node.id !== undefined) out.id = node.id;
  if (node.magnitudeMean !== 1) out.magnitude_mean = node.magnitudeMean;
  if (node.magnitudeStd !== undefined) out.magnitude_std = node.magnitudeStd;
  if (node.children.length) out.children = node.children.map(treeToJson);
  return out;
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  return JSON.stringify(v);
}

function round(x: number): string {
  return String(Math.round(x * 1e6) / 1e6);
}
