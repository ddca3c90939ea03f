/**
 * ActivationReader: open and validate a sharded dataset, then stream batches.
 *
 * `open` checks the manifest (format, version, keys), the expected d_in/dtype, and
 * that every shard and token file exists with exactly the size the manifest implies.
 * Each shard's CRC-32 is verified when the shard is read. `batches` streams with
 * bounded memory (see batch_stream.ts): the current shard, the prefetched next one
 * and the shuffle buffer.
 *
 * ```ts
 * const reader = await ActivationReader.open("runs/acts", { expectDIn: 768 });
 * const stream = reader.batches({ batchSize: 4096, order: "shuffle", seed: 1, epochs: Infinity });
 * for await (const batch of stream) {
 *   const x = await toGpu(gpu, batch); // f32 [batch.rows, d_in] on the GPU
 *   // ... train; save batch.cursor with the checkpoint, pass it back as `cursor` to resume
 *   x.destroy();
 * }
 * ```
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { uploadStorage } from "../gpu/buffer.ts";
import { uploadF16AsF32 } from "../gpu/unpack_f16.ts";
import { checksumHex, checksumValue } from "./checksum.ts";
import {
  type Dtype,
  dtypeBytes,
  type Manifest,
  MANIFEST_FILE,
  readManifest,
  TOKEN_ROW_BYTES,
} from "./manifest.ts";
import { type Batch, type BatchOptions, BatchStream } from "./batch_stream.ts";
import type { TokenInfo } from "./writer.ts";
import { type BatchValues, batchValuesF32 } from "../util/f16.ts";

/** Options of `ActivationReader.open`. */
export interface OpenOptions {
  /** Refuse a dataset whose d_in differs (e.g. the SAE's width). */
  expectDIn?: number;
  /** Refuse a dataset whose dtype differs. */
  expectDtype?: Dtype;
  /** Accept a dataset whose writer has not closed (default false). */
  allowIncomplete?: boolean;
  /** Verify each shard's checksum when it is read (default true). */
  verify?: boolean;
}

/** One shard in memory: raw row bytes and, when present, interleaved token triples. */
export interface LoadedShard {
  /** Shard index (file number). */
  index: number;
  /** Rows in the shard. */
  rows: number;
  /** `rows × d_in` elements, little-endian f16 or f32. */
  bytes: Uint8Array;
  /** `rows × 3` u32: token id, document id, position; null without token files. */
  tokens: Uint32Array | null;
}

/** A validated dataset folder; create with `ActivationReader.open`. */
export class ActivationReader {
  /** Dataset folder. */
  readonly dir: string;
  /** The validated manifest. */
  readonly manifest: Manifest;
  readonly #verify: boolean;
  #fingerprint = "";

  private constructor(dir: string, manifest: Manifest, verify: boolean) {
    this.dir = dir;
    this.manifest = manifest;
    this.#verify = verify;
  }

  /** Open and validate `dir`; every problem is a DataError naming the file and the fix. */
  static async open(dir: string, opts: OpenOptions = {}): Promise<ActivationReader> {
    const m = await readManifest(dir);
    const mpath = join(dir, MANIFEST_FILE);
    if (!m.complete && !opts.allowIncomplete) {
      throw new DataError(
        `${mpath}: dataset is incomplete (its writer was interrupted or is still running); ` +
          `resume the writer (rerun the same extract with --resume) or finish it before reading`,
      );
    }
    if (opts.expectDIn !== undefined && m.d_in !== opts.expectDIn) {
      throw new DataError(
        `${mpath}: d_in is ${m.d_in} but ${opts.expectDIn} was expected; ` +
          `use a dataset extracted at a hook of width ${opts.expectDIn}, or set d_in to ${m.d_in}`,
      );
    }
    if (opts.expectDtype !== undefined && m.dtype !== opts.expectDtype) {
      throw new DataError(
        `${mpath}: dtype is ${m.dtype} but ${opts.expectDtype} was expected; ` +
          `re-extract with dtype ${opts.expectDtype} or accept ${m.dtype}`,
      );
    }
    const rowBytes = m.d_in * dtypeBytes(m.dtype);
    for (const s of m.shards) {
      await checkSize(
        join(dir, s.file),
        s.tokens * rowBytes,
        `${s.tokens} rows × ${rowBytes} bytes`,
      );
      if (s.tokens_file) {
        await checkSize(
          join(dir, s.tokens_file),
          s.tokens * TOKEN_ROW_BYTES,
          `${s.tokens} rows × 12 bytes`,
        );
      }
    }
    return new ActivationReader(dir, m, opts.verify ?? true);
  }

  /** Width of a row. */
  get dIn(): number {
    return this.manifest.d_in;
  }

  /** Element type on disk. */
  get dtype(): Dtype {
    return this.manifest.dtype;
  }

  /** Rows in the dataset. */
  get totalTokens(): number {
    return this.manifest.total_tokens;
  }

  /** Whether token files are present. */
  get hasTokens(): boolean {
    return this.manifest.has_tokens;
  }

  /** Bytes per row on disk. */
  get rowBytes(): number {
    return this.manifest.d_in * dtypeBytes(this.manifest.dtype);
  }

  /** Bytes a loaded shard occupies in memory (rows and token triples). */
  shardBytes(i: number, withTokens = this.hasTokens): number {
    const rows = this.manifest.shards[i].tokens;
    return rows * this.rowBytes + (withTokens ? rows * TOKEN_ROW_BYTES : 0);
  }

  /**
   * Read shard `i` (and its token file unless `withTokens` is false), verifying size and checksum;
   * into the start of `into` when it is large enough (a consumed shard's buffer, recycled).
   */
  async loadShard(i: number, withTokens = this.hasTokens, into?: Uint8Array): Promise<LoadedShard> {
    const s = this.manifest.shards[i];
    const bytes = await readChecked(
      join(this.dir, s.file),
      s.tokens * this.rowBytes,
      this.#verify ? s.checksum : null,
      into,
    );
    let tokens: Uint32Array | null = null;
    if (withTokens && s.tokens_file) {
      const tb = await readChecked(
        join(this.dir, s.tokens_file),
        s.tokens * TOKEN_ROW_BYTES,
        this.#verify ? s.tokens_checksum ?? null : null,
      );
      tokens = new Uint32Array(tb.buffer, tb.byteOffset, s.tokens * 3);
    }
    return { index: i, rows: s.tokens, bytes, tokens };
  }

  /** Read every shard once and check its checksum (what `inspect --verify` would run). */
  async verifyAll(): Promise<void> {
    for (let i = 0; i < this.manifest.shards.length; i++) {
      const s = this.manifest.shards[i];
      await readChecked(join(this.dir, s.file), s.tokens * this.rowBytes, s.checksum);
      if (s.tokens_file) {
        await readChecked(
          join(this.dir, s.tokens_file),
          s.tokens * TOKEN_ROW_BYTES,
          s.tokens_checksum ?? null,
        );
      }
    }
  }

  /** A stream of batches; see `BatchOptions` for order, seed, epochs and resume. */
  batches(opts: BatchOptions): BatchStream {
    return new BatchStream(this, opts);
  }

  /** Short fingerprint of the dataset (CRC-32 over shape and shard checksums), stored in cursors. */
  fingerprint(): string {
    if (this.#fingerprint) return this.#fingerprint;
    const m = this.manifest;
    const text = `${m.dtype}:${m.d_in}:${m.total_tokens}:${
      m.shards.map((s) => s.checksum).join(",")
    }`;
    this.#fingerprint = checksumHex(new TextEncoder().encode(text));
    return this.#fingerprint;
  }
}

/** Throw unless `path` exists with exactly `want` bytes. */
async function checkSize(path: string, want: number, why: string) {
  let size: number;
  try {
    size = (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new DataError(
        `${path}: file listed in ${MANIFEST_FILE} is missing; restore it from a copy or regenerate the dataset`,
      );
    }
    throw new DataError(`${path}: cannot stat (${(e as Error).message}); check permissions`);
  }
  if (size !== want) {
    throw new DataError(
      `${path}: size is ${size} bytes but ${MANIFEST_FILE} implies ${want} (${why}); the file is ` +
        `${size < want ? "truncated" : "too long"} — restore it or regenerate the dataset`,
    );
  }
}

/** Read a whole file, checking its size and (unless `checksum` is null) its CRC-32. */
async function readChecked(
  path: string,
  want: number,
  checksum: string | null,
  into?: Uint8Array,
): Promise<Uint8Array> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new DataError(
        `${path}: file listed in ${MANIFEST_FILE} is missing; restore it from a copy or regenerate the dataset`,
      );
    }
    throw new DataError(`${path}: cannot read (${(e as Error).message}); check permissions`);
  }
  // One buffer of the known size filled by large reads: ~1.4× faster than Deno.readFile,
  // which grows its buffer as it goes. A recycled buffer (`into`) is faster again: a fresh one's
  // pages are faulted in as the read fills them (a 64 MiB shard: 95–104 against 44–48 ms).
  const bytes = into && into.length >= want ? into.subarray(0, want) : new Uint8Array(want);
  let size: number;
  try {
    size = (await file.stat()).size;
    let done = 0;
    while (size === want && done < want) {
      const n = await file.read(bytes.subarray(done));
      if (n === null) break;
      done += n;
    }
    if (done < want) size = Math.min(size, done);
  } finally {
    file.close();
  }
  if (size !== want) {
    throw new DataError(
      `${path}: size is ${size} bytes but ${MANIFEST_FILE} implies ${want}; the file changed or is ` +
        `${size < want ? "truncated" : "too long"} — restore it or regenerate the dataset`,
    );
  }
  if (checksum !== null) {
    const got = checksumValue(bytes).toString(16).padStart(8, "0");
    if (got !== checksum) {
      throw new DataError(
        `${path}: checksum mismatch (crc32 ${got} on disk, ${checksum} in ${MANIFEST_FILE}); ` +
          `the file is corrupt — restore it from a copy or regenerate the dataset`,
      );
    }
  }
  return bytes;
}

/** A batch's rows as f32 on the host (widens f16; returns f32 data as is). */
export function batchF32(batch: Batch): Float32Array {
  return batchValuesF32(batchValues(batch));
}

/** A batch's rows as numbers without copying: f32 as is, f16 bits viewed as a Float16Array. */
export function batchValues(batch: Batch): BatchValues {
  const x = batch.x;
  return x instanceof Float32Array ? x : new Float16Array(x.buffer, x.byteOffset, x.length);
}

/**
 * Upload a batch as an f32 `[rows, d_in]` storage buffer; f16 batches are widened on
 * the GPU (kernels/unpack_f16.wgsl). The caller destroys the buffer.
 */
export function toGpu(gpu: Gpu, batch: Batch, label = "activations"): Promise<GPUBuffer> {
  if (batch.x instanceof Float32Array) return Promise.resolve(uploadStorage(gpu, batch.x, label));
  return uploadF16AsF32(gpu, batch.x, label);
}

/** Everything in a (small) dataset, as f32. */
export interface AllRows {
  /** `[rows, d_in]` values. */
  x: Float32Array;
  rows: number;
  dIn: number;
  /** Token info of every row, when the dataset has token files. */
  tokens?: TokenInfo;
  manifest: Manifest;
}

/** Read a whole dataset into memory as f32, in shard order (for tests and small datasets). */
export async function readAllF32(dir: string, opts: OpenOptions = {}): Promise<AllRows> {
  const reader = await ActivationReader.open(dir, opts);
  return await readHeadRows(reader, reader.totalTokens);
}

/**
 * The first `rows` rows of an open dataset (at most all of them) as f32 in shard order, with
 * their token info when the dataset has token files; shards are loaded only as far as needed.
 */
export async function readHeadRows(reader: ActivationReader, rows: number): Promise<AllRows> {
  const n = Math.min(rows, reader.totalTokens), d = reader.dIn;
  const x = new Float32Array(n * d);
  const tokens = reader.hasTokens
    ? { tokenIds: new Uint32Array(n), docIds: new Uint32Array(n), positions: new Uint32Array(n) }
    : undefined;
  let row = 0;
  for (let i = 0; i < reader.manifest.shards.length && row < n; i++) {
    const s = await reader.loadShard(i);
    const take = Math.min(s.rows, n - row);
    const b = s.bytes;
    const values = reader.dtype === "f16"
      ? new Float16Array(b.buffer, b.byteOffset, take * d)
      : new Float32Array(b.buffer, b.byteOffset, take * d);
    x.set(values, row * d);
    if (tokens && s.tokens) {
      for (let r = 0; r < take; r++) {
        tokens.tokenIds[row + r] = s.tokens[3 * r];
        tokens.docIds[row + r] = s.tokens[3 * r + 1];
        tokens.positions[row + r] = s.tokens[3 * r + 2];
      }
    }
    row += take;
  }
  return { x, rows: n, dIn: d, ...(tokens ? { tokens } : {}), manifest: reader.manifest };
}
