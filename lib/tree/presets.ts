/**
 * Named model presets for every configuration of the paper's Tables 1 and 2 (App. C), plus the
 * matching Matryoshka and TopK baselines, so a comparison is one `--preset` away.
 *
 * - Main experiment (Table 1, n = 24,576 on GPT-2 small): Tree SAE with 2 layers [6144, 18432]
 *   or 4 layers [1536, 3072, 9216, 10752] at L0 = 32/48/64/80 with the per-layer k of Table 1;
 *   Matryoshka with the same layers and k = L0; TopK with n = 24,576 and k = L0.
 * - Scaling (Table 2): 6k (L0 = 8) and 49k (L0 = 64) dictionaries, layer sizes scaled
 *   proportionally to the main ones (App. C: "we also scale the number of features per layer
 *   proportionally"). Note: the reference's 4-layer scaling configs list [768, 384, 2304, 2688]
 *   and [6144, 3072, 18432, 21504] (first two layers swapped relative to a proportional scaling);
 *   we follow the paper's text. The TopK 6k/49k presets are ours, for completeness.
 * AuxK: α = 1/32 on the whole dictionary for the baselines, and on the tree's first layer only
 * (α_1 = 1/32, α_{2..L} = 0; App. C).
 */
import { ArborError } from "../errors.ts";
import { DEFAULT_AUX_ALPHA, type SaeArch } from "../sae/config.ts";

/** A preset: the architecture fields of an SaeConfig (everything else keeps its default). */
export interface SaePreset {
  /** Architecture. */
  arch: SaeArch;
  /** Layer sizes (topk: one entry, the dictionary size). */
  layers: number[];
  /** Active features per token (tree: Σ kPerLayer). */
  k: number;
  /** tree: k per layer (Table 1/2); empty for other architectures. */
  kPerLayer: number[];
  /** AuxK coefficients (tree: one per layer; others: one). */
  auxAlpha: number[];
  /** Where the numbers come from. */
  source: string;
}

/** Layer sizes of the main experiment (App. C). */
export const TREE_2LAYER_SIZES = [6144, 18432];
/** Layer sizes of the main experiment (App. C). */
export const TREE_4LAYER_SIZES = [1536, 3072, 9216, 10752];
/** Dictionary size of the main experiment (App. C). */
export const MAIN_DICTIONARY = 24_576;

/** Table 1: Tree SAE k per layer at each L0. */
const TABLE1: Record<number, { two: number[]; four: number[] }> = {
  32: { two: [26, 6], four: [21, 5, 4, 2] },
  48: { two: [40, 8], four: [32, 7, 5, 4] },
  64: { two: [53, 11], four: [44, 9, 6, 5] },
  80: { two: [69, 11], four: [56, 11, 7, 6] },
};

/** Table 2: dictionary size, L0 and Tree SAE k per layer of the scaling experiment. */
const TABLE2: Record<string, { n: number; l0: number; two: number[]; four: number[] }> = {
  "6k": { n: 6144, l0: 8, two: [6, 2], four: [5, 1, 1, 1] },
  "49k": { n: 49_152, l0: 64, two: [55, 9], four: [51, 4, 5, 4] },
};

function treeAlpha(layers: number): number[] {
  return Array.from({ length: layers }, (_, l) => (l === 0 ? DEFAULT_AUX_ALPHA : 0));
}

function sum(a: number[]): number {
  return a.reduce((x, y) => x + y, 0);
}

function buildPresets(): Record<string, SaePreset> {
  const out: Record<string, SaePreset> = {};
  const add = (
    name: string,
    arch: SaeArch,
    layers: number[],
    kPerLayer: number[],
    k: number,
    source: string,
  ) => {
    out[name] = {
      arch,
      layers,
      k,
      kPerLayer,
      auxAlpha: arch === "tree" ? treeAlpha(layers.length) : [DEFAULT_AUX_ALPHA],
      source,
    };
  };
  for (const [l0s, row] of Object.entries(TABLE1)) {
    const l0 = Number(l0s);
    const src = `paper Table 1, L0 = ${l0}, n = ${MAIN_DICTIONARY}`;
    add(`tree-2layer-l0-${l0}`, "tree", [...TREE_2LAYER_SIZES], row.two, sum(row.two), src);
    add(`tree-4layer-l0-${l0}`, "tree", [...TREE_4LAYER_SIZES], row.four, sum(row.four), src);
    add(`matryoshka-2layer-l0-${l0}`, "matryoshka", [...TREE_2LAYER_SIZES], [], l0, src);
    add(`matryoshka-4layer-l0-${l0}`, "matryoshka", [...TREE_4LAYER_SIZES], [], l0, src);
    add(`topk-l0-${l0}`, "topk", [MAIN_DICTIONARY], [], l0, src);
  }
  for (const [size, row] of Object.entries(TABLE2)) {
    const scale = row.n / MAIN_DICTIONARY;
    const two = TREE_2LAYER_SIZES.map((s) => s * scale);
    const four = TREE_4LAYER_SIZES.map((s) => s * scale);
    const src = `paper Table 2 (scaling), n = ${row.n}, L0 = ${row.l0}`;
    add(`tree-2layer-${size}`, "tree", two, row.two, sum(row.two), src);
    add(`tree-4layer-${size}`, "tree", four, row.four, sum(row.four), src);
    add(`matryoshka-2layer-${size}`, "matryoshka", [...two], [], row.l0, src);
    add(`matryoshka-4layer-${size}`, "matryoshka", [...four], [], row.l0, src);
    add(`topk-${size}`, "topk", [row.n], [], row.l0, `${src} (TopK baseline: ours)`);
  }
  return out;
}

/** Every preset by name, e.g. `tree-4layer-l0-32`, `matryoshka-2layer-6k`, `topk-l0-80`. */
export const PRESETS: Readonly<Record<string, SaePreset>> = buildPresets();

/** Preset names in a stable order (for `--help`). */
export const PRESET_NAMES: readonly string[] = Object.keys(PRESETS).sort();

/** A copy of preset `name`; throws ArborError listing the known names. */
export function getPreset(name: string): SaePreset {
  const p = PRESETS[name];
  if (p === undefined) {
    throw new ArborError(
      `--preset ${name}: unknown preset; choose one of ${PRESET_NAMES.join(", ")}`,
    );
  }
  return {
    ...p,
    layers: [...p.layers],
    kPerLayer: [...p.kPerLayer],
    auxAlpha: [...p.auxAlpha],
  };
}
