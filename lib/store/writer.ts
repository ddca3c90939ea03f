/**
 * ActivationWriter: append activation rows to a sharded dataset folder (DESIGN §3).
 *
 * Rows are buffered until a shard is full (`shardTokens` rows), then the shard (and
 * its token file) is written crash-safely (temp name, fsync, rename) and the
 * manifest is rewritten the same way, last. An interrupted run leaves a valid
 * manifest listing every completed shard with `complete: false`; reopening with
 * `resume` continues after the last complete shard and reports `rowsDone`, the
 * number of input rows the caller must skip. An existing dataset is never touched
 * unless `overwrite` is given; even then the new dataset is written into the
 * `.arbor-staging` sub-folder and replaces the old one only at `close`, so a failed
 * run leaves the old dataset readable (an interrupted overwrite resumes with
 * `overwrite` + `resume`; a crash while moving files in is finished on the next open).
 *
 * ```ts
 * const w = await ActivationWriter.create("runs/acts", {
 *   dIn: 768, dtype: "f16", provenance: { model: "gpt2", layer: 8 }, tokens: true, resume: true,
 * });
 * for (const { rows, info } of batchesFrom(w.rowsDone)) await w.append(rows, info);
 * const manifest = await w.close();
 * ```
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { syncDir, TMP_SUFFIX, writeFileAtomic } from "./atomic.ts";
import { CHECKSUM_ALGORITHM, checksumHex } from "./checksum.ts";
import {
  canonicalJson,
  type Dtype,
  dtypeBytes,
  FORMAT_NAME,
  FORMAT_VERSION,
  type Manifest,
  MANIFEST_FILE,
  manifestJson,
  type Provenance,
  readManifest,
  shardFileName,
  TOKEN_ROW_BYTES,
  tokensFileName,
} from "./manifest.ts";

/** Default shard size limit: 64 MiB keeps reader memory (two shards + shuffle buffer) modest. */
export const DEFAULT_SHARD_BYTES = 64 * 1024 * 1024;
/** Largest |value| that rounds to a finite f16 (65504 is the max; 65520 rounds to Inf). */
const F16_OVERFLOW = 65520;

/** What to do with an input row holding NaN or ±Inf (or, for f16, a value beyond ±65504). */
export type NanPolicy = "error" | "skip";

/** Token id, document id and position of each row (one entry per row). */
export interface TokenInfo {
  tokenIds: Uint32Array;
  docIds: Uint32Array;
  positions: Uint32Array;
}

/** Options of `ActivationWriter.create`. */
export interface WriterOptions {
  /** Width of a row (the model's hidden size). */
  dIn: number;
  /** Element type stored on disk. */
  dtype: Dtype;
  /** Rows per shard; default derived from `shardBytes`. */
  shardTokens?: number;
  /** Shard size limit in bytes when `shardTokens` is not given (default 64 MiB). */
  shardBytes?: number;
  /** Where the activations come from; `arbor_version` is filled in when absent. */
  provenance: Provenance;
  /** Whether `append` receives token info and token files are written (default false). */
  tokens?: boolean;
  /** Replace a dataset already in the folder (default false: refuse). */
  overwrite?: boolean;
  /** Continue an interrupted dataset with the same settings (default false). */
  resume?: boolean;
  /** NaN/Inf rows: "error" (default) throws, "skip" drops and counts them. */
  nanPolicy?: NanPolicy;
}

/** What one `append` call did. */
export interface AppendResult {
  /** Rows stored. */
  written: number;
  /** Rows dropped for NaN/Inf (policy "skip"). */
  skipped: number;
}

const OUR_FILE = /^(manifest\.json|shard-\d{5}\.bin|tokens-\d{5}\.bin)(\.tmp)?$/;
/** Sub-folder where an overwrite writes the new dataset until it is complete. */
export const STAGING_DIR = ".arbor-staging";

/** Whether `dir` has a staging folder holding a complete dataset. */
async function stagedComplete(dir: string): Promise<boolean> {
  const m = await readManifest(join(dir, STAGING_DIR)).catch(() => null);
  return m !== null && m.complete;
}

/**
 * Replace the dataset in `dir` by the complete one in its staging folder. Safe to
 * rerun after a crash at any point: files already moved are kept, the manifest moves last.
 */
async function promoteStaged(dir: string) {
  const staging = join(dir, STAGING_DIR);
  const m = await readManifest(staging);
  const files = m.shards.flatMap((s) => (s.tokens_file ? [s.file, s.tokens_file] : [s.file]));
  const staged = new Set((await listDir(staging)) ?? []);
  // The old manifest goes first, so no manifest ever names a mix of old and new shards.
  await Deno.remove(join(dir, MANIFEST_FILE)).catch(() => {});
  for (const n of (await listDir(dir)) ?? []) {
    const alreadyMoved = files.includes(n) && !staged.has(n);
    if (OUR_FILE.test(n) && !alreadyMoved) await Deno.remove(join(dir, n));
  }
  for (const f of files) if (staged.has(f)) await Deno.rename(join(staging, f), join(dir, f));
  await syncDir(dir);
  await Deno.rename(join(staging, MANIFEST_FILE), join(dir, MANIFEST_FILE));
  await syncDir(dir);
  await Deno.remove(staging, { recursive: true });
}

/** Folder entries, or null when the folder does not exist. */
async function listDir(dir: string): Promise<string[] | null> {
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    return names;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new DataError(
      `${dir}: cannot list the output folder (${(e as Error).message}); check the path`,
    );
  }
}

/** Check option values; errors name the option. */
function validateOptions(dir: string, o: WriterOptions) {
  const bad = (field: string, problem: string) => {
    throw new DataError(`${dir}: writer option ${field} ${problem}`);
  };
  if (!Number.isSafeInteger(o.dIn) || o.dIn < 1) {
    bad("dIn", `must be a positive integer, got ${o.dIn}`);
  }
  if (o.dtype !== "f32" && o.dtype !== "f16") {
    bad("dtype", `must be "f32" or "f16", got ${JSON.stringify(o.dtype)}`);
  }
  if (o.shardTokens !== undefined && (!Number.isSafeInteger(o.shardTokens) || o.shardTokens < 1)) {
    bad("shardTokens", `must be a positive integer, got ${o.shardTokens}`);
  }
  if (o.shardBytes !== undefined && !(o.shardBytes >= 1)) {
    bad("shardBytes", `must be positive, got ${o.shardBytes}`);
  }
  if (typeof o.provenance !== "object" || o.provenance === null || Array.isArray(o.provenance)) {
    bad("provenance", "must be an object (model, hook, layer, ...)");
  }
  if (o.nanPolicy !== undefined && o.nanPolicy !== "error" && o.nanPolicy !== "skip") {
    bad("nanPolicy", `must be "error" or "skip", got ${JSON.stringify(o.nanPolicy)}`);
  }
}

/** First difference between an existing manifest and the one we would write, or "". */
function difference(old: Manifest, next: Manifest): string {
  if (old.dtype !== next.dtype) return `dtype ${old.dtype} on disk, ${next.dtype} requested`;
  if (old.d_in !== next.d_in) return `d_in ${old.d_in} on disk, ${next.d_in} requested`;
  if (old.has_tokens !== next.has_tokens) {
    return `has_tokens ${old.has_tokens} on disk, ${next.has_tokens} requested`;
  }
  if (old.shard_tokens !== next.shard_tokens) {
    return `shard_tokens ${old.shard_tokens} on disk, ${next.shard_tokens} requested`;
  }
  const a = canonicalJson(old.provenance), b = canonicalJson(next.provenance);
  if (a !== b) return `provenance ${a} on disk, ${b} requested`;
  return "";
}

/** Appends rows to a sharded dataset; see the module comment. */
export class ActivationWriter {
  /** Input rows (stored + skipped) already in the dataset when it was opened: skip these on resume. */
  readonly rowsDone: number;
  /** Folder being written: the dataset folder, or its staging folder during an overwrite. */
  readonly #dir: string;
  /** Dataset folder to move the staged dataset into on close (overwrite), else null. */
  readonly #final: string | null;
  readonly #manifest: Manifest;
  readonly #policy: NanPolicy;
  readonly #rowBytes: number;
  readonly #buf: Uint8Array;
  readonly #values: Float32Array | Float16Array;
  readonly #tok: Uint32Array | null;
  #fill = 0;
  #pendingSkipped = 0;
  #inputRows: number;
  #closed = false;

  private constructor(dir: string, manifest: Manifest, policy: NanPolicy, final: string | null) {
    this.#dir = dir;
    this.#final = final;
    this.#manifest = manifest;
    this.#policy = policy;
    this.rowsDone = manifest.total_tokens + manifest.skipped_rows;
    this.#inputRows = this.rowsDone;
    const m = manifest;
    this.#rowBytes = m.d_in * dtypeBytes(m.dtype);
    this.#buf = new Uint8Array(m.shard_tokens * this.#rowBytes);
    this.#values = m.dtype === "f16"
      ? new Float16Array(this.#buf.buffer)
      : new Float32Array(this.#buf.buffer);
    this.#tok = m.has_tokens ? new Uint32Array(m.shard_tokens * 3) : null;
  }

  /**
   * Open `dir` for writing. Refuses a folder holding a different dataset, a dataset
   * not asked to be resumed, or foreign files, unless `overwrite`.
   */
  static async create(dir: string, opts: WriterOptions): Promise<ActivationWriter> {
    validateOptions(dir, opts);
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
      throw new DataError(
        `${dir}: this machine is big-endian; Arbor shards are little-endian only`,
      );
    }
    const rowBytes = opts.dIn * dtypeBytes(opts.dtype);
    const shardTokens = opts.shardTokens ??
      Math.max(1, Math.floor((opts.shardBytes ?? DEFAULT_SHARD_BYTES) / rowBytes));
    if (shardTokens * rowBytes > 2 ** 31) {
      throw new DataError(
        `${dir}: writer option shardTokens: a shard of ${
          shardTokens * rowBytes
        } bytes is over 2 GiB; use a smaller shard size`,
      );
    }
    const fresh: Manifest = {
      format: FORMAT_NAME,
      version: FORMAT_VERSION,
      dtype: opts.dtype,
      d_in: opts.dIn,
      total_tokens: 0,
      shard_tokens: shardTokens,
      has_tokens: opts.tokens ?? false,
      complete: false,
      skipped_rows: 0,
      checksum: CHECKSUM_ALGORITHM,
      shards: [],
      provenance: { ...opts.provenance, arbor_version: opts.provenance.arbor_version ?? VERSION },
    };
    const policy = opts.nanPolicy ?? "error";
    let names = await listDir(dir);
    if (names === null) {
      await Deno.mkdir(dir, { recursive: true });
      return new ActivationWriter(dir, fresh, policy, null);
    }
    if (names.includes(STAGING_DIR) && await stagedComplete(dir)) {
      // An overwrite finished writing but died while moving its files in: finish the move.
      await promoteStaged(dir);
      names = (await listDir(dir)) ?? [];
    }
    const hint = "pass overwrite (--overwrite) to replace it, or choose another output folder";
    if (names.includes(MANIFEST_FILE)) {
      let old: Manifest | null = null;
      let readError = "";
      try {
        old = await readManifest(dir);
      } catch (e) {
        readError = (e as Error).message;
      }
      if (!opts.overwrite) {
        if (old === null) {
          throw new DataError(
            `${dir}: output folder holds an unreadable dataset (${readError}); ${hint}`,
          );
        }
        const diff = difference(old, fresh);
        if (diff) {
          throw new DataError(
            `${dir}: output folder already holds a different dataset (${diff}); ${hint}`,
          );
        }
        if (!opts.resume) {
          throw new DataError(
            `${dir}: output folder already holds this dataset (${old.total_tokens} rows); ` +
              `pass resume (--resume) to continue it, or overwrite (--overwrite) to replace it`,
          );
        }
        return new ActivationWriter(dir, old, policy, null);
      }
      // Overwrite: the new dataset is written into a staging folder and replaces the old
      // one only when complete, so a failed run leaves the old dataset intact.
      const staging = join(dir, STAGING_DIR);
      if (opts.resume && names.includes(STAGING_DIR)) {
        const staged = await readManifest(staging).catch(() => null);
        if (staged && !difference(staged, fresh)) {
          return new ActivationWriter(staging, staged, policy, dir);
        }
      }
      await Deno.remove(staging, { recursive: true }).catch(() => {});
      await Deno.mkdir(staging);
      return new ActivationWriter(staging, fresh, policy, dir);
    }
    // No dataset here. Leftover temp files of an interrupted write are replaced as we go;
    // anything else (shards without a manifest, foreign files) needs overwrite.
    const blocking = names.filter((n) => !(OUR_FILE.test(n) && n.endsWith(TMP_SUFFIX)));
    if (blocking.length && !opts.overwrite) {
      throw new DataError(
        `${dir}: output folder is not empty and holds no ${MANIFEST_FILE} (found ${
          blocking.slice(0, 3).join(", ")
        }); choose an empty or new folder, or pass overwrite (--overwrite) to write into it anyway`,
      );
    }
    for (const n of names) {
      if (OUR_FILE.test(n)) await Deno.remove(join(dir, n));
    }
    await Deno.remove(join(dir, STAGING_DIR), { recursive: true }).catch(() => {});
    return new ActivationWriter(dir, fresh, policy, null);
  }

  /** Reopen an interrupted dataset with the settings recorded in its manifest. */
  static async resume(
    dir: string,
    opts: { nanPolicy?: NanPolicy } = {},
  ): Promise<ActivationWriter> {
    const m = await readManifest(dir);
    return ActivationWriter.create(dir, {
      dIn: m.d_in,
      dtype: m.dtype,
      shardTokens: m.shard_tokens,
      provenance: m.provenance,
      tokens: m.has_tokens,
      resume: true,
      nanPolicy: opts.nanPolicy,
    });
  }

  /** Rows per shard. */
  get shardTokens(): number {
    return this.#manifest.shard_tokens;
  }

  /** Input rows consumed so far, including `rowsDone` and skipped rows. */
  get inputRows(): number {
    return this.#inputRows;
  }

  /** Rows stored so far (flushed + buffered). */
  get rowsWritten(): number {
    return this.#manifest.total_tokens + this.#fill;
  }

  /** Rows dropped for NaN/Inf so far (all runs). */
  get skippedRows(): number {
    return this.#manifest.skipped_rows + this.#pendingSkipped;
  }

  /**
   * Append `rows` (row-major, `rows.length / dIn` rows) and, for a dataset with
   * tokens, their token info. A NaN/Inf row throws (policy "error"; nothing of this
   * call is stored) or is dropped and counted (policy "skip").
   */
  async append(rows: Float32Array, tokenInfo?: TokenInfo): Promise<AppendResult> {
    const m = this.#manifest;
    const d = m.d_in;
    if (this.#closed) {
      throw new DataError(
        `${this.#final ?? this.#dir}: append after close; open a new writer with resume`,
      );
    }
    if (m.complete) {
      throw new DataError(
        `${
          this.#final ?? this.#dir
        }: dataset is already complete (${m.total_tokens} rows); nothing more can be appended — ` +
          `pass overwrite (--overwrite) to rewrite it`,
      );
    }
    if (rows.length % d !== 0) {
      throw new DataError(
        `${
          this.#final ?? this.#dir
        }: append got ${rows.length} values, not a multiple of d_in = ${d}`,
      );
    }
    const n = rows.length / d;
    if (m.has_tokens) {
      if (!tokenInfo) {
        throw new DataError(
          `${this.#final ?? this.#dir}: this dataset stores tokens; pass tokenInfo to append`,
        );
      }
      for (const key of ["tokenIds", "docIds", "positions"] as const) {
        if (tokenInfo[key].length !== n) {
          throw new DataError(
            `${this.#final ?? this.#dir}: tokenInfo.${key} has ${
              tokenInfo[key].length
            } entries for ${n} rows`,
          );
        }
      }
    } else if (tokenInfo) {
      throw new DataError(
        `${
          this.#final ?? this.#dir
        }: tokenInfo given but the writer was created without tokens: true`,
      );
    }
    const bad = this.#badRows(rows, n);
    if (bad.length && this.#policy === "error") {
      const r = bad[0];
      const col = rows.subarray(r * d, (r + 1) * d).findIndex((v) =>
        !(Math.abs(v) < this.#limit())
      );
      throw new DataError(
        `${this.#final ?? this.#dir}: input row ${this.#inputRows + r} holds ${
          rows[r * d + col]
        } at column ${col}` +
          (m.dtype === "f16" ? " (NaN, ±Inf and |x| > 65504 do not fit f16)" : " (NaN or ±Inf)") +
          `; check the model and hook, or pass nanPolicy "skip" (--nan skip) to drop such rows`,
      );
    }
    // Skips are counted in input order so a flushed shard's count covers exactly the
    // input rows before its last row; that keeps `rowsDone` exact after a crash.
    let start = 0;
    for (const r of [...bad, n]) {
      if (r > start) await this.#copy(rows, tokenInfo, start, r);
      if (r < n) this.#pendingSkipped++;
      start = r + 1;
    }
    this.#inputRows += n;
    return { written: n - bad.length, skipped: bad.length };
  }

  /**
   * Flush the last shard, mark the dataset complete, and return the manifest.
   * `stats` (e.g. standardisation mean/std) is stored as given.
   */
  async close(opts: { stats?: Record<string, unknown> } = {}): Promise<Manifest> {
    if (this.#closed) return this.#manifest;
    if (this.#fill > 0 || this.#pendingSkipped > 0) await this.#flush();
    this.#manifest.complete = true;
    if (opts.stats !== undefined) this.#manifest.stats = opts.stats;
    await this.#writeManifest();
    this.#closed = true;
    for (const name of (await listDir(this.#dir)) ?? []) {
      if (OUR_FILE.test(name) && name.endsWith(TMP_SUFFIX)) {
        await Deno.remove(join(this.#dir, name));
      }
    }
    if (this.#final) await promoteStaged(this.#final);
    return this.#manifest;
  }

  #limit(): number {
    return this.#manifest.dtype === "f16" ? F16_OVERFLOW : Infinity;
  }

  /** Indices of rows holding a value that is not finite in the stored dtype. */
  #badRows(rows: Float32Array, n: number): number[] {
    const d = this.#manifest.d_in;
    const lim = this.#limit();
    const bad: number[] = [];
    for (let r = 0; r < n; r++) {
      const end = (r + 1) * d;
      for (let i = r * d; i < end; i++) {
        const v = rows[i];
        // Written so NaN fails both comparisons.
        if (!(v < lim && v > -lim)) {
          bad.push(r);
          break;
        }
      }
    }
    return bad;
  }

  /** Copy input rows [a, b) into the shard buffer, flushing full shards. */
  async #copy(rows: Float32Array, info: TokenInfo | undefined, a: number, b: number) {
    const d = this.#manifest.d_in;
    const cap = this.#manifest.shard_tokens;
    while (a < b) {
      const m = Math.min(cap - this.#fill, b - a);
      this.#values.set(rows.subarray(a * d, (a + m) * d), this.#fill * d);
      if (this.#tok && info) {
        const t = this.#tok;
        for (let i = 0; i < m; i++) {
          const o = (this.#fill + i) * 3;
          t[o] = info.tokenIds[a + i];
          t[o + 1] = info.docIds[a + i];
          t[o + 2] = info.positions[a + i];
        }
      }
      this.#fill += m;
      a += m;
      if (this.#fill === cap) await this.#flush();
    }
  }

  /** Write the buffered shard (if any rows) and then the manifest. */
  async #flush() {
    const m = this.#manifest;
    if (this.#fill > 0) {
      const i = m.shards.length;
      const bytes = this.#buf.subarray(0, this.#fill * this.#rowBytes);
      const entry = { file: shardFileName(i), tokens: this.#fill, checksum: checksumHex(bytes) };
      await writeFileAtomic(this.#dir, entry.file, [bytes]);
      if (this.#tok) {
        const tb = new Uint8Array(this.#tok.buffer, 0, this.#fill * TOKEN_ROW_BYTES);
        await writeFileAtomic(this.#dir, tokensFileName(i), [tb]);
        Object.assign(entry, { tokens_file: tokensFileName(i), tokens_checksum: checksumHex(tb) });
      }
      m.shards.push(entry);
      m.total_tokens += this.#fill;
      this.#fill = 0;
    }
    m.skipped_rows += this.#pendingSkipped;
    this.#pendingSkipped = 0;
    await this.#writeManifest();
  }

  async #writeManifest() {
    await writeFileAtomic(this.#dir, MANIFEST_FILE, [
      new TextEncoder().encode(manifestJson(this.#manifest)),
    ]);
  }
}
