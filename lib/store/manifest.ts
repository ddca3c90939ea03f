/**
 * The dataset manifest (`manifest.json`): what a folder of activation shards holds.
 *
 * On disk (keys exactly these; unknown keys are rejected):
 * ```json
 * { "format": "arbor-activations", "version": 1, "dtype": "f16", "d_in": 768,
 *   "total_tokens": 100000, "shard_tokens": 32768, "has_tokens": true,
 *   "complete": true, "skipped_rows": 0, "checksum": "crc32",
 *   "shards": [{ "file": "shard-00000.bin", "tokens": 32768, "checksum": "8 hex digits",
 *                "tokens_file": "tokens-00000.bin", "tokens_checksum": "8 hex digits" }],
 *   "provenance": { "model": "gpt2", "hook": "resid_post", "layer": 8, "context": 128,
 *                   "tokenizer": "gpt2", "corpus": "...", "seed": 0, "arbor_version": "0.1.0" },
 *   "stats": { } }
 * ```
 * Shards are row-major `[tokens, d_in]` little-endian f32 or f16; token files hold
 * three little-endian u32 per row (token id, document id, position). Checksums are
 * CRC-32 (see checksum.ts). `complete` is false while a writer is still running or
 * was interrupted; `skipped_rows` counts NaN/Inf input rows dropped under the
 * "skip" policy. `provenance` and `stats` are free-form JSON objects.
 */
import { DataError } from "../errors.ts";
import { CHECKSUM_ALGORITHM } from "./checksum.ts";

/** Format name in every manifest. */
export const FORMAT_NAME = "arbor-activations";
/** The manifest version this code reads and writes. */
export const FORMAT_VERSION = 1;
/** File name of the manifest inside a dataset folder. */
export const MANIFEST_FILE = "manifest.json";

/** Element type of the shards. */
export type Dtype = "f32" | "f16";

/** Bytes per element of a dtype. */
export function dtypeBytes(dtype: Dtype): number {
  return dtype === "f16" ? 2 : 4;
}

/** Bytes per row in a token file: token id, document id, position (u32 each). */
export const TOKEN_ROW_BYTES = 12;

/** One shard of a dataset. */
export interface ShardEntry {
  /** Shard file name inside the folder, e.g. "shard-00000.bin". */
  file: string;
  /** Rows in this shard. */
  tokens: number;
  /** CRC-32 of the shard file, 8 hex digits. */
  checksum: string;
  /** Token file name, when the dataset has token files. */
  tokens_file?: string;
  /** CRC-32 of the token file. */
  tokens_checksum?: string;
}

/** Where the activations came from (free-form; these keys are the conventional ones). */
export interface Provenance {
  model?: string;
  hook?: string;
  layer?: number;
  context?: number;
  tokenizer?: string;
  corpus?: string;
  seed?: number;
  arbor_version?: string;
  [key: string]: unknown;
}

/** The parsed `manifest.json`. */
export interface Manifest {
  format: typeof FORMAT_NAME;
  version: typeof FORMAT_VERSION;
  dtype: Dtype;
  d_in: number;
  /** Rows over all shards. */
  total_tokens: number;
  /** Rows in every shard but the last (the writer's cut size). */
  shard_tokens: number;
  /** Whether every shard has a token file. */
  has_tokens: boolean;
  /** False while the writer has not closed (running or interrupted). */
  complete: boolean;
  /** Input rows dropped for NaN/Inf under the "skip" policy. */
  skipped_rows: number;
  /** Checksum algorithm, always "crc32". */
  checksum: typeof CHECKSUM_ALGORITHM;
  shards: ShardEntry[];
  provenance: Provenance;
  /** Optional statistics (e.g. standardisation mean/std), free-form. */
  stats?: Record<string, unknown>;
}

/** Shard file name of shard `i`. */
export function shardFileName(i: number): string {
  return `shard-${String(i).padStart(5, "0")}.bin`;
}

/** Token file name of shard `i`. */
export function tokensFileName(i: number): string {
  return `tokens-${String(i).padStart(5, "0")}.bin`;
}

const TOP_KEYS = [
  "format",
  "version",
  "dtype",
  "d_in",
  "total_tokens",
  "shard_tokens",
  "has_tokens",
  "complete",
  "skipped_rows",
  "checksum",
  "shards",
  "provenance",
  "stats",
];
const SHARD_KEYS = ["file", "tokens", "checksum", "tokens_file", "tokens_checksum"];
const HEX8 = /^[0-9a-f]{8}$/;
const FIX =
  "regenerate the dataset (arbor extract / arbor synth) or restore the folder from a copy";

/** Throw a DataError naming the manifest file, the field and the fix. */
function fail(path: string, field: string, problem: string, fix = FIX): never {
  throw new DataError(`${path}: field "${field}" ${problem}; ${fix}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkKeys(path: string, where: string, obj: Record<string, unknown>, allowed: string[]) {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      fail(
        path,
        where + key,
        `is not part of format ${FORMAT_NAME} v${FORMAT_VERSION}`,
        `remove it, or use an Arbor version that knows it`,
      );
    }
  }
}

function count(path: string, field: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    fail(path, field, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Validate parsed JSON as a manifest. `path` names the file in errors.
 * Checks types, unknown keys, version, shard names, checksums and that the
 * shard token counts add up to `total_tokens`.
 */
export function validateManifest(raw: unknown, path: string): Manifest {
  if (!isObject(raw)) fail(path, "(top level)", "must be a JSON object");
  if (raw.format !== FORMAT_NAME) {
    fail(
      path,
      "format",
      `must be "${FORMAT_NAME}", got ${JSON.stringify(raw.format)}`,
      "this folder is not an Arbor activation dataset; point at one written by arbor extract / synth",
    );
  }
  if (raw.version !== FORMAT_VERSION) {
    fail(
      path,
      "version",
      `is ${JSON.stringify(raw.version)} but this Arbor reads version ${FORMAT_VERSION}`,
      "upgrade Arbor to read it, or regenerate the dataset with this version",
    );
  }
  checkKeys(path, "", raw, TOP_KEYS);
  if (raw.dtype !== "f32" && raw.dtype !== "f16") {
    fail(path, "dtype", `must be "f32" or "f16", got ${JSON.stringify(raw.dtype)}`);
  }
  count(path, "d_in", raw.d_in, 1);
  const total = count(path, "total_tokens", raw.total_tokens, 0);
  const shardTokens = count(path, "shard_tokens", raw.shard_tokens, 1);
  count(path, "skipped_rows", raw.skipped_rows, 0);
  if (typeof raw.has_tokens !== "boolean") fail(path, "has_tokens", "must be true or false");
  if (typeof raw.complete !== "boolean") fail(path, "complete", "must be true or false");
  if (raw.checksum !== CHECKSUM_ALGORITHM) {
    fail(path, "checksum", `must be "${CHECKSUM_ALGORITHM}", got ${JSON.stringify(raw.checksum)}`);
  }
  if (!isObject(raw.provenance)) fail(path, "provenance", "must be a JSON object");
  if (raw.stats !== undefined && !isObject(raw.stats)) {
    fail(path, "stats", "must be a JSON object when present");
  }
  if (!Array.isArray(raw.shards)) fail(path, "shards", "must be a list");
  const shards = raw.shards as unknown[];
  let sum = 0;
  shards.forEach((s: unknown, i: number) => {
    const f = `shards[${i}].`;
    if (!isObject(s)) fail(path, `shards[${i}]`, "must be a JSON object");
    checkKeys(path, f, s, SHARD_KEYS);
    if (s.file !== shardFileName(i)) {
      fail(path, f + "file", `must be "${shardFileName(i)}", got ${JSON.stringify(s.file)}`);
    }
    const n = count(path, f + "tokens", s.tokens, 1);
    if (n > shardTokens || (n < shardTokens && i < shards.length - 1)) {
      fail(
        path,
        f + "tokens",
        `is ${n}; every shard but the last must hold shard_tokens = ${shardTokens}`,
      );
    }
    sum += n;
    if (typeof s.checksum !== "string" || !HEX8.test(s.checksum)) {
      fail(path, f + "checksum", "must be 8 lowercase hex digits");
    }
    if (raw.has_tokens) {
      if (s.tokens_file !== tokensFileName(i)) {
        fail(path, f + "tokens_file", `must be "${tokensFileName(i)}" because has_tokens is true`);
      }
      if (typeof s.tokens_checksum !== "string" || !HEX8.test(s.tokens_checksum)) {
        fail(path, f + "tokens_checksum", "must be 8 lowercase hex digits");
      }
    } else if (s.tokens_file !== undefined || s.tokens_checksum !== undefined) {
      fail(path, f + "tokens_file", "must be absent because has_tokens is false");
    }
  });
  if (sum !== total) fail(path, "total_tokens", `is ${total} but the shards hold ${sum} rows`);
  return raw as unknown as Manifest;
}

/** Read and validate `dir/manifest.json`; a missing or unparsable file is a DataError. */
export async function readManifest(dir: string): Promise<Manifest> {
  const path = `${dir.replace(/\/+$/, "")}/${MANIFEST_FILE}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new DataError(
        `${path}: manifest not found; point at a dataset folder written by arbor extract / synth ` +
          `(it holds manifest.json and shard-NNNNN.bin files)`,
      );
    }
    throw new DataError(
      `${path}: cannot read manifest (${(e as Error).message}); check the path and permissions`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new DataError(`${path}: manifest is not valid JSON (${(e as Error).message}); ${FIX}`);
  }
  return validateManifest(raw, path);
}

/** Serialise a manifest with a stable key order (so identical datasets give identical bytes). */
export function manifestJson(m: Manifest): string {
  const ordered: Record<string, unknown> = {};
  for (const key of TOP_KEYS) {
    const v = (m as unknown as Record<string, unknown>)[key];
    if (v !== undefined) ordered[key] = v;
  }
  return JSON.stringify(ordered, null, 2) + "\n";
}

/** JSON text with object keys sorted, to compare provenance objects regardless of key order. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, val) => {
    if (!isObject(val)) return val;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(val).sort()) out[k] = val[k];
    return out;
  });
}
