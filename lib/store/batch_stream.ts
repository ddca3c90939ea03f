/**
 * BatchStream: batches of B rows from an ActivationReader with bounded memory.
 *
 * Memory held at any time: the current shard, the next shard (read in the background
 * while the consumer works; during an epoch's last shard, the next epoch's first), and in
 * shuffle order a window of `shuffleRows` rows.
 * `heldBytes()` / `maxHeldBytes()` report it (emitted batches belong to the consumer).
 *
 * Orders:
 * - `sequential`: shards in file order, rows in order.
 * - `shuffle`: shard order is a seeded permutation per epoch; the concatenated rows are
 *   cut into windows of `shuffleRows` rows (windows span shards), and each window is
 *   emitted in a seeded random order. Window w of epoch e uses seed mixSeed(seed, e, w),
 *   so the cursor (epoch, rows emitted) fixes the whole state: resuming from
 *   `batch.cursor` gives exactly the rows an uninterrupted run would have seen next.
 */
import { DataError } from "../errors.ts";
import { type Dtype, TOKEN_ROW_BYTES } from "./manifest.ts";
import { mixSeed, permutation } from "./shuffle.ts";
import type { ActivationReader, LoadedShard } from "./reader.ts";
import type { TokenInfo } from "./writer.ts";

/** Row order of a stream. */
export type ReadOrder = "sequential" | "shuffle";

/** Where a stream stands; JSON-serialisable, pass back as `BatchOptions.cursor` to resume. */
export interface ReadCursor {
  format: "arbor-cursor";
  /** Fingerprint of the dataset the cursor belongs to. */
  dataset: string;
  order: ReadOrder;
  seed: number;
  /** Shuffle window in rows (0 for sequential). */
  shuffle_rows: number;
  /** Epoch being read (0-based). */
  epoch: number;
  /** Rows of this epoch already emitted. */
  rows: number;
  /** Shard file index the stream reads next (window start in shuffle order); -1 at epoch end. */
  shard: number;
  /** Row offset inside that shard. */
  offset: number;
}

/** Options of `ActivationReader.batches`. */
export interface BatchOptions {
  /** Rows per batch. */
  batchSize: number;
  /** "sequential" (default) or "shuffle". */
  order?: ReadOrder;
  /** Shuffle seed (default 0). */
  seed?: number;
  /** Shuffle window in rows (default: one shard's rows, at most the dataset). */
  shuffleRows?: number;
  /** Passes over the data (default 1; Infinity for an endless stream). */
  epochs?: number;
  /** Drop each epoch's last partial batch (default false). */
  dropLast?: boolean;
  /** Emit token info with each batch (default: when the dataset has token files). */
  tokens?: boolean;
  /** Resume from a cursor taken from an earlier batch of a stream with the same options. */
  cursor?: ReadCursor;
}

/** A batch of rows. */
export interface Batch {
  /** Rows in this batch (≤ batchSize). */
  rows: number;
  dIn: number;
  dtype: Dtype;
  /** `[rows, d_in]` row-major: f16 bit patterns (Uint16Array) or f32 values. */
  x: Uint16Array | Float32Array;
  /** Token info per row, when requested and present. */
  tokens?: TokenInfo;
  /** Epoch this batch belongs to. */
  epoch: number;
  /** Position after this batch; save it to resume right after this batch. */
  cursor: ReadCursor;
}

/** Recycled batch buffers a stream keeps (a trainer gives one back per step). */
const POOL_MAX = 2;

/** Streams batches; see the module comment. Close it (or finish the loop) to release files. */
export class BatchStream implements AsyncIterableIterator<Batch> {
  readonly #r: ActivationReader;
  readonly #b: number;
  readonly #order: ReadOrder;
  readonly #seed: number;
  readonly #window: number;
  readonly #epochs: number;
  readonly #dropLast: boolean;
  readonly #withTokens: boolean;
  readonly #rb: number;
  readonly #total: number;
  #epoch = 0;
  #emitted = 0;
  #shardOrder: number[] = [];
  /** Cumulative rows before each position of #shardOrder. */
  #starts: number[] = [];
  // Stream over the epoch's concatenated rows.
  #k = -1;
  #cur: LoadedShard | null = null;
  #curOff = 0;
  #next: Promise<LoadedShard> | null = null;
  /**
   * The next epoch's first shard, read while the last shard of this one is consumed; `same` when
   * it is that very shard (one-shard datasets; held once).
   */
  #epochNext: { index: number; shard: Promise<LoadedShard>; same: LoadedShard | null } | null =
    null;
  /** A consumed shard's buffer, for the next load to read into (no fresh pages to fault in). */
  #spare: Uint8Array | null = null;
  /** Batch buffers given back by `recycle`. */
  #pool: ArrayBuffer[] = [];
  // Shuffle window.
  #win: Uint8Array | null = null;
  #winTok: Uint32Array | null = null;
  #winRows = 0;
  #winPos = 0;
  #perm: Uint32Array = new Uint32Array(0);
  #held = 0;
  #maxHeld = 0;
  #started = false;
  #done = false;

  constructor(reader: ActivationReader, o: BatchOptions) {
    this.#r = reader;
    const where = `${reader.dir}: batches()`;
    if (!Number.isSafeInteger(o.batchSize) || o.batchSize < 1) {
      throw new DataError(`${where}: batchSize must be a positive integer, got ${o.batchSize}`);
    }
    this.#b = o.batchSize;
    this.#order = o.order ?? "sequential";
    if (this.#order !== "sequential" && this.#order !== "shuffle") {
      throw new DataError(
        `${where}: order must be "sequential" or "shuffle", got ${JSON.stringify(o.order)}`,
      );
    }
    this.#seed = o.seed ?? 0;
    this.#total = reader.totalTokens;
    const defaultWindow = Math.min(reader.manifest.shard_tokens, this.#total);
    this.#window = this.#order === "shuffle" ? Math.max(1, o.shuffleRows ?? defaultWindow) : 0;
    if (!Number.isSafeInteger(this.#window)) {
      throw new DataError(`${where}: shuffleRows must be a positive integer, got ${o.shuffleRows}`);
    }
    this.#epochs = o.epochs ?? 1;
    if (!(this.#epochs >= 1)) throw new DataError(`${where}: epochs must be ≥ 1, got ${o.epochs}`);
    this.#dropLast = o.dropLast ?? false;
    this.#withTokens = (o.tokens ?? reader.hasTokens) && reader.hasTokens;
    if (o.tokens && !reader.hasTokens) {
      throw new DataError(
        `${where}: tokens requested but the dataset has no token files; extract with tokens`,
      );
    }
    this.#rb = reader.rowBytes;
    if (o.cursor) this.#applyCursor(o.cursor);
  }

  /** Bytes of shard data and shuffle window this stream holds now. */
  heldBytes(): number {
    return this.#held;
  }

  /** The most bytes held at any moment so far. */
  maxHeldBytes(): number {
    return this.#maxHeld;
  }

  /** The cursor of the current position (same as the last batch's `cursor`). */
  cursor(): ReadCursor {
    const pos = this.#order === "shuffle"
      ? Math.floor(this.#emitted / this.#window) * this.#window
      : this.#emitted;
    let shard = -1, offset = 0;
    if (this.#emitted < this.#total) {
      if (this.#shardOrder.length === 0) this.#planEpoch();
      const k = this.#locate(pos);
      shard = this.#shardOrder[k];
      offset = pos - this.#starts[k];
    }
    return {
      format: "arbor-cursor",
      dataset: this.#r.fingerprint(),
      order: this.#order,
      seed: this.#seed,
      shuffle_rows: this.#window,
      epoch: this.#epoch,
      rows: this.#emitted,
      shard,
      offset,
    };
  }

  /** Next batch, or done when every epoch has been read. */
  async next(): Promise<IteratorResult<Batch>> {
    const batch = await this.nextBatch();
    return batch ? { value: batch, done: false } : { value: undefined, done: true };
  }

  /** Next batch, or null at the end (await each call before the next). A read error closes the stream and is rethrown. */
  async nextBatch(): Promise<Batch | null> {
    try {
      return await this.#read();
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  async #read(): Promise<Batch | null> {
    if (this.#done) return null;
    if (this.#emitted >= this.#total || (this.#dropLast && this.#total - this.#emitted < this.#b)) {
      if (!(await this.#nextEpoch())) return null;
    }
    if (!this.#started) await this.#start();
    const m = Math.min(this.#b, this.#total - this.#emitted);
    const out = this.#outBuffer(m * this.#rb);
    const tok = this.#withTokens ? new Uint32Array(m * 3) : null;
    if (this.#order === "sequential") await this.#pull(out, tok, 0, m);
    else await this.#gather(out, tok, m);
    this.#emitted += m;
    const dtype = this.#r.dtype;
    const batch: Batch = {
      rows: m,
      dIn: this.#r.dIn,
      dtype,
      x: dtype === "f16"
        ? new Uint16Array(out.buffer, 0, m * this.#r.dIn)
        : new Float32Array(out.buffer, 0, m * this.#r.dIn),
      epoch: this.#epoch,
      cursor: this.cursor(),
    };
    if (tok) batch.tokens = splitTokens(tok, m);
    return batch;
  }

  /**
   * Give back a batch's buffer (`batch.x.buffer`) once nothing reads its rows any more: a later
   * batch is assembled in it. A fresh buffer's pages fault in as the rows are copied, which cost
   * the shuffle more than the copies (4 096 rows of 1 536 bytes: ~10 against ~4 ms).
   */
  recycle(buffer: ArrayBuffer) {
    if (this.#pool.length < POOL_MAX && !this.#pool.includes(buffer)) this.#pool.push(buffer);
  }

  /** A batch buffer of `bytes`: a recycled one when one is large enough. */
  #outBuffer(bytes: number): Uint8Array {
    const i = this.#pool.findIndex((b) => b.byteLength >= bytes);
    if (i < 0) return new Uint8Array(bytes);
    const [b] = this.#pool.splice(i, 1);
    return new Uint8Array(b, 0, bytes);
  }

  /** Stop reading: wait for a background read in flight and drop held shards. */
  async close(): Promise<void> {
    this.#done = true;
    await this.#dropStream();
    const early = this.#epochNext;
    this.#epochNext = null;
    if (early && !early.same) {
      this.#held -= this.#r.shardBytes(early.index, this.#withTokens);
      await early.shard.catch(() => {});
    }
    this.#spare = null;
    this.#pool = [];
    this.#setWindow(0);
  }

  /** Iterator protocol: `break` in a for-await loop closes the stream. */
  async return(): Promise<IteratorResult<Batch>> {
    await this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Batch> {
    return this;
  }

  /** Advance to the next epoch; false when all epochs are done (stream closed). */
  async #nextEpoch(): Promise<boolean> {
    if (this.#epoch + 1 >= this.#epochs || this.#total === 0) {
      await this.close();
      return false;
    }
    this.#epoch++;
    this.#emitted = 0;
    await this.#dropStream();
    this.#started = false;
    this.#winRows = this.#winPos = 0;
    this.#shardOrder = [];
    return true;
  }

  /** Shard order and cumulative starts for the current epoch. */
  #planEpoch() {
    const n = this.#r.manifest.shards.length;
    this.#shardOrder = this.#order === "shuffle"
      ? Array.from(permutation(n, mixSeed(this.#seed, this.#epoch, 0xffffffff)))
      : Array.from({ length: n }, (_, i) => i);
    this.#starts = [];
    let acc = 0;
    for (const i of this.#shardOrder) {
      this.#starts.push(acc);
      acc += this.#r.manifest.shards[i].tokens;
    }
  }

  /** Order position of the shard holding stream row `pos`. */
  #locate(pos: number): number {
    let k = this.#starts.length - 1;
    while (k > 0 && this.#starts[k] > pos) k--;
    return k;
  }

  /** Position the stream (and shuffle window) for `#emitted` rows of the current epoch. */
  async #start() {
    this.#started = true;
    if (this.#shardOrder.length === 0) this.#planEpoch();
    if (this.#order === "sequential") {
      await this.#seek(this.#emitted);
    } else {
      const w = Math.floor(this.#emitted / this.#window);
      await this.#seek(w * this.#window);
      await this.#fillWindow(w);
      this.#winPos = this.#emitted - w * this.#window;
    }
  }

  /** Load the shard holding stream row `pos` and prefetch the one after. */
  async #seek(pos: number) {
    await this.#dropStream();
    const k = this.#locate(pos);
    this.#k = k;
    this.#cur = await this.#load(k);
    this.#curOff = pos - this.#starts[k];
    this.#prefetch();
  }

  #load(k: number): Promise<LoadedShard> {
    const i = this.#shardOrder[k];
    const early = this.#epochNext;
    if (early) {
      this.#epochNext = null;
      if (early.index === i) {
        // Held since it was read; a shared one becomes held a second time, as a fresh read would.
        if (early.same) this.#addHeld(this.#r.shardBytes(i, this.#withTokens));
        return early.shard;
      }
      if (!early.same) this.#held -= this.#r.shardBytes(early.index, this.#withTokens);
    }
    this.#addHeld(this.#r.shardBytes(i, this.#withTokens));
    const into = this.#spare ?? undefined;
    this.#spare = null;
    return this.#r.loadShard(i, this.#withTokens, into);
  }

  #prefetch() {
    if (this.#k + 1 < this.#shardOrder.length) {
      this.#next = this.#load(this.#k + 1);
      // A failed prefetch is reported when the shard is awaited, not as an unhandled rejection.
      this.#next.catch(() => {});
    } else if (this.#epoch + 1 < this.#epochs && !this.#epochNext) {
      // The last shard of the epoch: read the next epoch's first one now, so that the epoch's
      // start does not wait for a cold read (~40 ms for 64 MiB on this project's VM; with a few
      // shards per epoch that was most of the reader's stalls). The same shard is shared.
      const index = this.#firstShardOf(this.#epoch + 1);
      const same = this.#cur?.index === index ? this.#cur : null;
      this.#addHeld(same ? 0 : this.#r.shardBytes(index, this.#withTokens));
      const shard = same ? Promise.resolve(same) : this.#r.loadShard(index, this.#withTokens);
      shard.catch(() => {});
      this.#epochNext = { index, shard, same };
    }
  }

  /** The shard file an epoch starts with. */
  #firstShardOf(epoch: number): number {
    if (this.#order !== "shuffle") return 0;
    const n = this.#r.manifest.shards.length;
    return permutation(n, mixSeed(this.#seed, epoch, 0xffffffff))[0];
  }

  #addHeld(bytes: number) {
    this.#held += bytes;
    if (this.#held > this.#maxHeld) this.#maxHeld = this.#held;
  }

  /** Release the current and prefetched shard. */
  async #dropStream() {
    if (this.#cur) this.#held -= this.#r.shardBytes(this.#cur.index, this.#withTokens);
    this.#cur = null;
    if (this.#next) {
      const pending = this.#next;
      this.#next = null;
      this.#held -= this.#r.shardBytes(this.#shardOrder[this.#k + 1], this.#withTokens);
      await pending.catch(() => {});
    }
  }

  /** Copy the next `n` stream rows into `out` (and token triples into `tok`) from row `at`. */
  async #pull(out: Uint8Array, tok: Uint32Array | null, at: number, n: number) {
    const rb = this.#rb;
    while (n > 0) {
      let cur = this.#cur!;
      if (this.#curOff === cur.rows) {
        this.#held -= this.#r.shardBytes(cur.index, this.#withTokens);
        // Its rows are all copied out: the next prefetch reads into its buffer.
        if (this.#epochNext?.same !== cur) this.#spare = new Uint8Array(cur.bytes.buffer);
        this.#cur = null;
        if (!this.#next) throw new Error("BatchStream: read past the last shard (bug)");
        const next = this.#next;
        this.#next = null;
        this.#k++;
        cur = this.#cur = await next;
        this.#curOff = 0;
        this.#prefetch();
      }
      const m = Math.min(n, cur.rows - this.#curOff);
      out.set(cur.bytes.subarray(this.#curOff * rb, (this.#curOff + m) * rb), at * rb);
      if (tok && cur.tokens) {
        tok.set(cur.tokens.subarray(this.#curOff * 3, (this.#curOff + m) * 3), at * 3);
      }
      this.#curOff += m;
      at += m;
      n -= m;
    }
  }

  #setWindow(rows: number) {
    const bytes = rows * this.#rb, tokBytes = this.#withTokens ? rows * TOKEN_ROW_BYTES : 0;
    const had = (this.#win?.length ?? 0) + (this.#winTok?.byteLength ?? 0);
    if (had === bytes + tokBytes) return;
    this.#held -= had;
    this.#win = rows ? new Uint8Array(bytes) : null;
    this.#winTok = rows && this.#withTokens ? new Uint32Array(rows * 3) : null;
    this.#addHeld(bytes + tokBytes);
  }

  /** Read window `w` of the epoch into the buffer and draw its permutation. */
  async #fillWindow(w: number) {
    const rows = Math.min(this.#window, this.#total - w * this.#window);
    if (!this.#win || this.#win.length < rows * this.#rb) {
      this.#setWindow(Math.min(this.#window, this.#total));
    }
    await this.#pull(this.#win!, this.#winTok, 0, rows);
    this.#winRows = rows;
    this.#winPos = 0;
    this.#perm = permutation(rows, mixSeed(this.#seed, this.#epoch, w));
  }

  /** Emit `m` rows from shuffle windows, refilling them as they run out. */
  async #gather(out: Uint8Array, tok: Uint32Array | null, m: number) {
    const rb = this.#rb;
    let filled = 0;
    while (filled < m) {
      if (this.#winPos === this.#winRows) {
        await this.#fillWindow(Math.floor((this.#emitted + filled) / this.#window));
      }
      const t = Math.min(m - filled, this.#winRows - this.#winPos);
      const win = this.#win!, wt = this.#winTok, perm = this.#perm;
      for (let i = 0; i < t; i++) {
        const src = perm[this.#winPos + i];
        out.set(win.subarray(src * rb, src * rb + rb), (filled + i) * rb);
        if (tok && wt) {
          const o = (filled + i) * 3, s = src * 3;
          tok[o] = wt[s];
          tok[o + 1] = wt[s + 1];
          tok[o + 2] = wt[s + 2];
        }
      }
      this.#winPos += t;
      filled += t;
    }
  }

  /** Check a cursor against this stream's options and dataset, then adopt its position. */
  #applyCursor(c: ReadCursor) {
    const where = `${this.#r.dir}: batches() cursor`;
    if (typeof c !== "object" || c === null || c.format !== "arbor-cursor") {
      throw new DataError(
        `${where}: not an Arbor read cursor; pass the \`cursor\` of a batch from this dataset`,
      );
    }
    const same = c.dataset === this.#r.fingerprint() && c.order === this.#order &&
      c.seed === this.#seed &&
      c.shuffle_rows === this.#window;
    if (!same) {
      throw new DataError(
        `${where}: was taken from a different dataset or read options (dataset ${c.dataset}, order ${c.order}, ` +
          `seed ${c.seed}, shuffle_rows ${c.shuffle_rows}); resume with the same dataset, order, seed and shuffleRows`,
      );
    }
    if (
      !Number.isSafeInteger(c.epoch) || c.epoch < 0 || !Number.isSafeInteger(c.rows) ||
      c.rows < 0 || c.rows > this.#total
    ) {
      throw new DataError(
        `${where}: epoch ${c.epoch} / rows ${c.rows} out of range for ${this.#total} rows`,
      );
    }
    this.#epoch = c.epoch;
    this.#emitted = c.rows;
    if (c.epoch >= this.#epochs) this.#done = true;
    const mine = this.cursor();
    if (mine.shard !== c.shard || mine.offset !== c.offset) {
      throw new DataError(
        `${where}: shard ${c.shard} offset ${c.offset} disagrees with rows ${c.rows}; the cursor was edited or damaged`,
      );
    }
  }
}

/** De-interleave `m` token triples into three arrays. */
function splitTokens(tok: Uint32Array, m: number): TokenInfo {
  const tokenIds = new Uint32Array(m), docIds = new Uint32Array(m), positions = new Uint32Array(m);
  for (let i = 0; i < m; i++) {
    tokenIds[i] = tok[3 * i];
    docIds[i] = tok[3 * i + 1];
    positions[i] = tok[3 * i + 2];
  }
  return { tokenIds, docIds, positions };
}
