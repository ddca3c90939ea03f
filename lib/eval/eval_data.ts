/**
 * The activations an evaluation reads: the first `tokens` rows of a dataset folder, in
 * shard order (deterministic; no shuffle needed since every metric pools over tokens),
 * converted to f32, with a clear error when the dataset does not fit the SAE.
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import { ActivationReader, readHeadRows } from "../store/reader.ts";
import { type Manifest, MANIFEST_FILE } from "../store/manifest.ts";

/** Rows read for an evaluation. */
export interface EvalRows {
  /** Activations [rows, d] (f32). */
  x: Float32Array;
  rows: number;
  d: number;
  manifest: Manifest;
  /** Token ids of the rows, when the dataset has token files. */
  tokenIds?: Uint32Array;
}

/**
 * Read up to `tokens` rows of `dir` (all rows if the dataset is smaller). `saeDIn` and
 * `saeName` name what the rows must fit; a mismatch is a DataError saying what is needed.
 */
export async function readEvalRows(
  dir: string,
  tokens: number,
  saeDIn: number,
  saeName: string,
): Promise<EvalRows> {
  const reader = await ActivationReader.open(dir);
  const m = reader.manifest;
  if (m.d_in !== saeDIn) {
    throw new DataError(
      `${join(dir, MANIFEST_FILE)}: activations have d_in = ${m.d_in} but the SAE ${saeName} ` +
        `expects d_in = ${saeDIn}; evaluate it on activations from the hook it was trained on ` +
        `(--data DIR with d_in ${saeDIn})`,
    );
  }
  const d = m.d_in;
  const rows = Math.min(tokens, m.total_tokens);
  if (rows === 0) {
    throw new DataError(`${join(dir, MANIFEST_FILE)}: dataset has no rows to evaluate`);
  }
  const { x, tokens: tok } = await readHeadRows(reader, rows);
  const tokenIds = tok?.tokenIds;
  return { x, rows, d, manifest: m, ...(tokenIds ? { tokenIds } : {}) };
}
