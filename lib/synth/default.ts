/**
 * The built-in synthetic hierarchy used by the demo (`train` with no `--data`): small
 * enough that a Tree SAE trains in minutes on a 2-core CPU with software WebGPU.
 *
 * 30 true features in 2 levels (6 top-level, 4 mutually exclusive children each) in d_in = 32,
 * noisy magnitudes, ε-mixed directions, 200k tokens (25.6 MB of f32). A child fires on half of
 * its parent's tokens, so flat SAEs see parent+child pairs often enough to absorb parents.
 * Chosen by experiment (issue #5 helper report): with the earlier 3-level tree (50 features,
 * branching 5,3,2) no SAE recovered more than a few percent of the features in the demo's
 * training budget.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { isSynthDatasetCurrent, writeSynthDataset } from "./dataset.ts";
import type { SynthParams } from "./generator.ts";
import { type FeatureTree, parseTree, treeFromParams, type TreeParams } from "./tree.ts";
import { readTruth, type Truth } from "./truth.ts";

/** Tree of the default dataset. */
export const DEFAULT_TREE_PARAMS: TreeParams = {
  branching: [6, 4],
  topMass: 1.5,
  childMass: 0.5,
  zipf: 0.5,
  exclusive: true,
  binary: false,
};

/** Generator settings of the default dataset. */
export const DEFAULT_SYNTH_PARAMS: SynthParams = {
  dIn: 32,
  tokens: 200_000,
  noise: 0.02,
  magnitudeStd: 0.15,
  epsilon: 0.2,
  siblingEpsilon: 0.1,
  seed: 7,
  keepEmpty: false,
};

/** Folder name of the default dataset inside the cache. */
export const DEFAULT_DATASET_NAME = "synth-default";

/** The default tree, validated. */
export function defaultTree(): FeatureTree {
  return parseTree(treeFromParams(DEFAULT_TREE_PARAMS), "default synthetic tree");
}

/**
 * Arbor's cache folder: $ARBOR_CACHE when set, else `.cache/arbor` under the repository
 * (or under the working directory when running from a compiled binary).
 */
export function arborCacheDir(): string {
  const env = Deno.env.get("ARBOR_CACHE");
  if (env) return env;
  const here = new URL("../../", import.meta.url);
  const root = here.protocol === "file:" ? fileURLToPath(here) : Deno.cwd();
  return join(root, ".cache", "arbor");
}

/** The default dataset on disk. */
export interface DefaultDataset {
  /** Dataset folder (manifest.json, shards, truth.json, truth-active.bin). */
  dir: string;
  truth: Truth;
  /** Whether this call generated it (false: reused from the cache). */
  generated: boolean;
}

/**
 * Generate the default dataset into `<cacheDir>/synth-default` once and reuse it while it
 * is complete and matches the current definition (otherwise it is regenerated in place).
 */
export async function ensureDefaultDataset(
  cacheDir: string = arborCacheDir(),
  opts: { tokens?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<DefaultDataset> {
  const dir = join(cacheDir, DEFAULT_DATASET_NAME);
  const tree = defaultTree();
  const params = {
    ...DEFAULT_SYNTH_PARAMS,
    ...(opts.tokens !== undefined ? { tokens: opts.tokens } : {}),
  };
  let generated = false;
  if (!(await isSynthDatasetCurrent(dir, tree, params))) {
    await Deno.mkdir(cacheDir, { recursive: true });
    await writeSynthDataset(dir, {
      tree,
      params,
      overwrite: true,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
    generated = true;
  }
  const truth = await readTruth(dir);
  if (!truth) throw new Error(`${dir}: truth.json vanished right after generation`);
  return { dir, truth, generated };
}
