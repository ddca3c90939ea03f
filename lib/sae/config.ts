/**
 * The SAE model configuration shared by every engine, the trainer and checkpoints.
 * One flat record for the four architectures (fields that only some use say so),
 * plus `validateConfig`, the one place that rejects a bad combination and names
 * the field. Derived sizes (n, offsets, slots per row) come from the helpers below.
 */
import { ArborError } from "../errors.ts";

/** The SAE architectures Arbor trains (DESIGN §4). */
export type SaeArch = "topk" | "batchtopk" | "matryoshka" | "tree" | "mp";

/** Every architecture name, for flag validation and help text. */
export const SAE_ARCHS: readonly SaeArch[] = ["topk", "batchtopk", "matryoshka", "tree", "mp"];

/** Number of dead features AuxK uses per token (paper App. C, after Gao et al. 2024). */
export const DEFAULT_AUX_K = 256;
/** AuxK coefficient α for TopK / BatchTopK / Matryoshka and the Tree SAE's first layer (paper App. C). */
export const DEFAULT_AUX_ALPHA = 1 / 32;
/** Tokens without firing after which a feature counts as dead (paper §4, after Gao et al. 2024). */
export const DEFAULT_DEAD_TOKENS = 10_000_000;
/** Adam learning rate (paper App. C / ref). */
export const DEFAULT_LR = 1e-4;
/** BatchTopK: a token keeps at most this many times k of the batch's winners (documented deviation). */
export const BATCHTOPK_ROW_CAP = 4;

/**
 * How a Tree SAE's initial allocation is dealt (the paper does not say): `balanced` gives every
 * earlier feature the same number of children (Algorithm 1 with equal capacities) and the root
 * none; `random` draws each child's parent uniformly over the earlier features and the root.
 */
export type TreeInit = "balanced" | "random";

/** Every TreeInit, for flag validation and help text. */
export const TREE_INITS: readonly TreeInit[] = ["balanced", "random"];

/** Model configuration. Counts are plain integers; token counts are in tokens, not steps. */
export interface SaeConfig {
  /** Architecture. */
  arch: SaeArch;
  /** Width of the input activations (d_in), in floats per token. */
  dIn: number;
  /**
   * Feature counts per layer, in features; their sum is n, the dictionary size.
   * topk/batchtopk: exactly one entry. matryoshka: the nested groups (prefix ends are
   * the running sums). tree: the privilege layers s_0..s_{L-1}.
   */
  layers: number[];
  /**
   * Active features per token. topk/matryoshka: slots per token; batchtopk: average per
   * token (k·B per batch); tree: must equal the sum of `kPerLayer`.
   */
  k: number;
  /** tree only: active features per token in each layer (k_l ≤ layers[l]); empty otherwise. */
  kPerLayer: number[];
  /** AuxK: dead features used per token to reconstruct the residual (0 turns AuxK off). */
  auxK: number;
  /**
   * AuxK coefficients: tree: one per layer (default [1/32, 0, ...], paper App. C);
   * other archs: a single value for the whole dictionary (default 1/32).
   */
  auxAlpha: number[];
  /** Tokens a feature may go without firing (val > 1e-3) before it counts as dead. */
  deadTokens: number;
  /** Adam learning rate. */
  lr: number;
  /** Seed of the initialisation RNG (u32). */
  seed: number;
  /** tree only: initial allocation (default balanced); absent in other archs and old checkpoints. */
  initTree?: TreeInit;
}

/** Options for `makeConfig`: everything except arch, dIn and layers has a default. */
export type SaeConfigInput =
  & Pick<SaeConfig, "arch" | "dIn" | "layers">
  & Partial<Omit<SaeConfig, "arch" | "dIn" | "layers">>;

/** Fill defaults (paper values) and validate; throws ArborError naming the bad field. */
export function makeConfig(input: SaeConfigInput, where = "SAE config"): SaeConfig {
  const kPerLayer = input.kPerLayer ?? [];
  const tree = input.arch === "tree";
  const config: SaeConfig = {
    arch: input.arch,
    dIn: input.dIn,
    layers: [...input.layers],
    k: input.k ?? (tree ? kPerLayer.reduce((a, b) => a + b, 0) : 32),
    kPerLayer: [...kPerLayer],
    auxK: input.auxK ?? DEFAULT_AUX_K,
    auxAlpha: input.auxAlpha
      ? [...input.auxAlpha]
      : defaultAuxAlpha(input.arch, input.layers.length),
    deadTokens: input.deadTokens ?? DEFAULT_DEAD_TOKENS,
    lr: input.lr ?? DEFAULT_LR,
    seed: input.seed ?? 0,
    ...(tree ? { initTree: input.initTree ?? "balanced" } : {}),
  };
  validateConfig(config, where);
  return config;
}

/** Default AuxK coefficients: tree [1/32, 0, 0, ...] (paper App. C), otherwise [1/32]. */
export function defaultAuxAlpha(arch: SaeArch, numLayers: number): number[] {
  if (arch !== "tree") return [DEFAULT_AUX_ALPHA];
  return Array.from({ length: numLayers }, (_, l) => (l === 0 ? DEFAULT_AUX_ALPHA : 0));
}

function isCount(v: unknown, min: number): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= min;
}

/**
 * Check every field and combination; throws ArborError "<where>: <field> ... <fix>".
 * Checks: arch known, dIn ≥ 1, layer sizes ≥ 1 (one layer for topk/batchtopk),
 * 1 ≤ k ≤ n, tree kPerLayer length = layers and 1 ≤ k_l ≤ s_l with k = Σ k_l,
 * auxAlpha length and sign, auxK ≥ 0, deadTokens ≥ 1, lr > 0, seed a u32.
 */
export function validateConfig(c: SaeConfig, where = "SAE config"): void {
  const fail = (msg: string): never => {
    throw new ArborError(`${where}: ${msg}`);
  };
  if (!SAE_ARCHS.includes(c.arch)) {
    fail(`arch "${c.arch}" is unknown; use one of ${SAE_ARCHS.join(", ")}`);
  }
  if (!isCount(c.dIn, 1)) fail(`dIn = ${c.dIn} must be a positive integer`);
  if (!Array.isArray(c.layers) || c.layers.length === 0) {
    fail("layers is empty; give at least one layer size");
  }
  c.layers.forEach((s, l) => {
    if (!isCount(s, 1)) fail(`layers[${l}] = ${s} must be a positive integer`);
  });
  if ((c.arch === "topk" || c.arch === "batchtopk" || c.arch === "mp") && c.layers.length !== 1) {
    fail(`${c.arch} takes one layer (the dictionary size), got ${c.layers.length} layers`);
  }
  if (c.initTree !== undefined && !TREE_INITS.includes(c.initTree)) {
    fail(`initTree "${c.initTree}" is unknown; use one of ${TREE_INITS.join(", ")}`);
  }
  const n = numFeatures(c);
  if (c.arch === "tree") {
    if (c.kPerLayer.length !== c.layers.length) {
      fail(
        `kPerLayer has ${c.kPerLayer.length} entries but there are ${c.layers.length} layers; ` +
          "give one k per layer",
      );
    }
    c.kPerLayer.forEach((k, l) => {
      if (!isCount(k, 1)) fail(`kPerLayer[${l}] = ${k} must be a positive integer`);
      if (k > c.layers[l]) {
        fail(`kPerLayer[${l}] = ${k} exceeds the ${c.layers[l]} features of layer ${l}`);
      }
    });
    const sum = c.kPerLayer.reduce((a, b) => a + b, 0);
    if (c.k !== sum) fail(`k = ${c.k} must equal the sum of kPerLayer (${sum}) for a tree`);
  } else if (c.kPerLayer.length !== 0) {
    fail(`kPerLayer is for the tree architecture only; ${c.arch} uses k`);
  }
  if (!isCount(c.k, 1)) fail(`k = ${c.k} must be a positive integer`);
  if (c.k > n) fail(`k = ${c.k} exceeds the number of features n = ${n}; lower k or add features`);
  const alphaLen = c.arch === "tree" ? c.layers.length : 1;
  if (c.auxAlpha.length !== alphaLen) {
    fail(
      `auxAlpha has ${c.auxAlpha.length} entries; ${c.arch} needs ${alphaLen}` +
        (c.arch === "tree" ? " (one per layer)" : ""),
    );
  }
  c.auxAlpha.forEach((a, l) => {
    if (!(Number.isFinite(a) && a >= 0)) fail(`auxAlpha[${l}] = ${a} must be a finite number ≥ 0`);
  });
  if (!isCount(c.auxK, 0)) fail(`auxK = ${c.auxK} must be an integer ≥ 0`);
  if (!isCount(c.deadTokens, 1)) fail(`deadTokens = ${c.deadTokens} must be a positive integer`);
  if (!(Number.isFinite(c.lr) && c.lr > 0)) fail(`lr = ${c.lr} must be a positive number`);
  if (!(isCount(c.seed, 0) && c.seed <= 0xffffffff)) {
    fail(`seed = ${c.seed} must be an integer in [0, 2^32)`);
  }
}

/** n: total number of features (sum of the layer sizes). */
export function numFeatures(c: Pick<SaeConfig, "layers">): number {
  return c.layers.reduce((a, b) => a + b, 0);
}

/** o_l: index of the first feature of each layer (length L + 1; the last entry is n). */
export function layerOffsets(c: Pick<SaeConfig, "layers">): number[] {
  const out = [0];
  for (const s of c.layers) out.push(out[out.length - 1] + s);
  return out;
}

/** The layer (level) of every feature, u32 [n]. */
export function featureLayers(c: Pick<SaeConfig, "layers">): Uint32Array {
  const out = new Uint32Array(numFeatures(c));
  const off = layerOffsets(c);
  for (let l = 0; l < c.layers.length; l++) out.fill(l, off[l], off[l + 1]);
  return out;
}

/**
 * K: code slots per token. tree: Σ k_l; topk/matryoshka: k; batchtopk: min(n, 4k)
 * (a token keeps at most 4k of the batch's k·B winners — documented deviation).
 */
export function slotsPerRow(c: SaeConfig): number {
  if (c.arch === "batchtopk") return Math.min(numFeatures(c), BATCHTOPK_ROW_CAP * c.k);
  return c.k;
}

/** Number of reconstruction levels in the loss: layers for matryoshka/tree, else 1. */
export function numLevels(c: SaeConfig): number {
  return c.arch === "tree" || c.arch === "matryoshka" ? c.layers.length : 1;
}
