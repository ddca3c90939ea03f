/**
 * Write a synthetic dataset: the activation store (manifest.json + shards, via
 * ActivationWriter) plus `truth-active.bin` and `truth.json` beside the manifest.
 *
 * Write order makes a half-written folder detectable: an old truth.json is removed
 * first, then the store is written (its manifest last, `complete` on close), then the
 * activity record, then truth.json — so "truth.json present and consistent" means the
 * whole dataset is there.
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import { writeFileAtomic } from "../store/atomic.ts";
import { type Dtype, type Manifest, MANIFEST_FILE, readManifest } from "../store/manifest.ts";
import { ActivationWriter } from "../store/writer.ts";
import { SynthGenerator, type SynthParams } from "./generator.ts";
import type { FeatureTree } from "./tree.ts";
import { ACTIVITY_FILE, TRUTH_FILE, type TruthJson, truthJson } from "./truth.ts";

/** Rows generated per batch (memory: batch × d_in × 4 bytes). */
export const SYNTH_BATCH_ROWS = 8192;

/** Options of `writeSynthDataset`. */
export interface SynthDatasetOptions {
  tree: FeatureTree;
  params: SynthParams;
  /** Element type of the shards (default f32). */
  dtype?: Dtype;
  /** Replace a dataset already in the folder (default: refuse). */
  overwrite?: boolean;
  /** Rows per shard (default: the store's 64 MiB shards). */
  shardTokens?: number;
  /** Called after each batch with rows done and total. */
  onProgress?: (done: number, total: number) => void;
}

/** What `writeSynthDataset` produced. */
export interface SynthDatasetResult {
  dir: string;
  manifest: Manifest;
  truth: TruthJson;
}

/** Generate the dataset into `dir` (see the module doc for the write order). */
export async function writeSynthDataset(
  dir: string,
  opts: SynthDatasetOptions,
): Promise<SynthDatasetResult> {
  const { tree, params } = opts;
  const gen = new SynthGenerator(tree, params); // validates params before touching the folder
  if (opts.overwrite) await removeIfPresent(join(dir, TRUTH_FILE));
  else if (await exists(join(dir, MANIFEST_FILE)) || await exists(join(dir, TRUTH_FILE))) {
    throw new DataError(
      `${dir}: already holds a dataset; pass --overwrite to regenerate it, or choose another folder`,
    );
  }
  const writer = await ActivationWriter.create(dir, {
    dIn: params.dIn,
    dtype: opts.dtype ?? "f32",
    ...(opts.shardTokens !== undefined ? { shardTokens: opts.shardTokens } : {}),
    provenance: {
      model: "synthetic",
      corpus: `arbor synth: ${gen.features} true features, depth ${Math.max(...tree.levels) + 1}`,
      seed: params.seed,
    },
    overwrite: opts.overwrite ?? false,
  });
  const activity: Uint8Array[] = [];
  for (const batch of gen.batches(SYNTH_BATCH_ROWS)) {
    await writer.append(batch.x);
    activity.push(batch.active);
    opts.onProgress?.(gen.produced, params.tokens);
  }
  const manifest = await writer.close();
  await writeFileAtomic(dir, ACTIVITY_FILE, activity);
  const truth = truthJson(gen);
  await writeFileAtomic(dir, TRUTH_FILE, [new TextEncoder().encode(JSON.stringify(truth) + "\n")]);
  return { dir, manifest, truth };
}

/**
 * Whether `dir` holds a complete synthetic dataset whose truth.json matches `expect`
 * (same parameters, tree and seed): truth.json parses, the manifest is complete with the
 * same token count and d_in, and the activity record has the right size.
 */
export async function isSynthDatasetCurrent(
  dir: string,
  tree: FeatureTree,
  params: SynthParams,
): Promise<boolean> {
  let truth: TruthJson;
  try {
    truth = JSON.parse(await Deno.readTextFile(join(dir, TRUTH_FILE)));
  } catch {
    return false;
  }
  const gen = new SynthGenerator(tree, { ...params, tokens: 1 });
  const want = truthJson(gen);
  const same = truth.version === want.version && truth.d_in === params.dIn &&
    truth.tokens === params.tokens &&
    truth.seed === params.seed && JSON.stringify(truth.params) === JSON.stringify(want.params) &&
    JSON.stringify(truth.tree) === JSON.stringify(want.tree);
  if (!same) return false;
  try {
    const m = await readManifest(dir);
    if (!m.complete || m.total_tokens !== params.tokens || m.d_in !== params.dIn) return false;
    const size = (await Deno.stat(join(dir, ACTIVITY_FILE))).size;
    return size === params.tokens * truth.activity.bytes_per_row;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
