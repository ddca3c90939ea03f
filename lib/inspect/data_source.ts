/**
 * The activations `inspect` encodes: the dataset named by `--data`, else the one recorded in
 * the checkpoint's config.json (metadata.data, written by `train`), read as the first
 * `tokens` rows in shard order with their token files (token id, document id, position)
 * and, for synthetic datasets, the ground truth (truth.json + truth-active.bin).
 */
import { isAbsolute, join, resolve } from "node:path";
import { DataError } from "../errors.ts";
import { CONFIG_FILE } from "../train/checkpoint.ts";
import { ActivationReader, readHeadRows } from "../store/reader.ts";
import { type Manifest, MANIFEST_FILE } from "../store/manifest.ts";
import { readTruth, readTruthActivity, type Truth } from "../synth/truth.ts";

/** Rows read for inspection. */
export interface InspectRows {
  /** Dataset folder. */
  dir: string;
  /** Raw activations [rows, d] (f32). */
  x: Float32Array;
  rows: number;
  d: number;
  manifest: Manifest;
  /** Token id, document id and position of each row; null without token files. */
  tokens: { ids: Uint32Array; docs: Uint32Array; positions: Uint32Array } | null;
  /** Ground truth of a synthetic dataset, with the true activity bitset [rows, W] of these rows. */
  truth: { truth: Truth; activity: Uint8Array } | null;
}

/** Where a checkpoint's dataset is, or why there is none. */
export type DataLocation = { dir: string } | { problem: string };

async function isDataset(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(join(dir, MANIFEST_FILE))).isFile;
  } catch {
    return false;
  }
}

/**
 * Find the dataset: `flag` (--data) if given, else config.json's metadata.data (or
 * metadata.dataset; `cpath` names another metadata file, e.g. a SAELens cfg.json), tried
 * relative to the working directory and then to the checkpoint.
 * A --data folder that is not a dataset is an error; a missing recorded one is reported as
 * a `problem` (the tree view still works without data).
 */
export async function locateData(
  checkpoint: string,
  flag?: string,
  cpath = join(checkpoint, CONFIG_FILE),
): Promise<DataLocation> {
  if (flag !== undefined) {
    if (!(await isDataset(flag))) {
      throw new DataError(
        `--data ${flag}: no ${MANIFEST_FILE} there; pass an activation dataset folder (from extract or synth)`,
      );
    }
    return { dir: flag };
  }
  let recorded: unknown;
  try {
    const meta = JSON.parse(await Deno.readTextFile(cpath))?.metadata ?? {};
    recorded = meta.data ?? meta.dataset;
  } catch (e) {
    throw new DataError(`${cpath}: cannot read (${(e as Error).message})`);
  }
  if (typeof recorded !== "string" || recorded === "") {
    return {
      problem: `${cpath} records no dataset (metadata.data); pass the activations with --data DIR`,
    };
  }
  const tries = isAbsolute(recorded)
    ? [recorded]
    : [resolve(recorded), resolve(checkpoint, recorded)];
  for (const dir of tries) if (await isDataset(dir)) return { dir };
  return {
    problem: `${cpath} says the SAE was trained on ${recorded}, but there is no dataset there ` +
      `(no ${MANIFEST_FILE}); pass the activations with --data DIR`,
  };
}

/**
 * Read the first `tokens` rows of `dir` (all rows if fewer). `dIn` is the SAE's width: a
 * dataset of another width is a DataError naming both.
 */
export async function readInspectRows(
  dir: string,
  tokens: number,
  dIn: number,
): Promise<InspectRows> {
  const reader = await ActivationReader.open(dir);
  const m = reader.manifest;
  const mpath = join(dir, MANIFEST_FILE);
  if (m.d_in !== dIn) {
    throw new DataError(
      `${mpath}: activations have d_in = ${m.d_in} but the SAE expects d_in = ${dIn}; ` +
        `pass the dataset it was trained on (--data DIR)`,
    );
  }
  const rows = Math.min(tokens, m.total_tokens);
  if (rows === 0) throw new DataError(`${mpath}: dataset has no rows`);
  const d = m.d_in;
  const head = await readHeadRows(reader, rows);
  const x = head.x;
  const tok = head.tokens
    ? { ids: head.tokens.tokenIds, docs: head.tokens.docIds, positions: head.tokens.positions }
    : null;
  const truth = await readTruth(dir);
  const withTruth = truth
    ? { truth, activity: await readTruthActivity(dir, truth, 0, rows) }
    : null;
  return { dir, x, rows, d, manifest: m, tokens: tok, truth: withTruth };
}
