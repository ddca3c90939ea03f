/**
 * Where the trainer's batches come from: a small interface with two implementations,
 * an in-memory array (tests, synthetic data) and the sharded activation store. Both
 * give a JSON cursor after each batch so a resumed run sees exactly the rows an
 * uninterrupted one would have.
 */
import { ArborError } from "../errors.ts";
import { ActivationReader, batchValues } from "../store/reader.ts";
import type { BatchValues } from "../util/f16.ts";
import type { BatchStream, ReadCursor } from "../store/batch_stream.ts";

/** One batch of raw activations. */
export interface SourceBatch {
  /** [rows, dIn] row-major: f32, or f16 as an f16 store holds them (see `BatchValues`). */
  x: BatchValues;
  /** Rows in this batch. */
  rows: number;
  /** Position after this batch (JSON); pass it back when reopening to resume. */
  cursor: unknown;
  /** Where a source already looked: index of the first NaN or ±Inf in x, -1 for none. */
  nonFinite?: number;
  /** Call once nothing reads x any more (the engine has uploaded it): the source may reuse its buffer. */
  release?(): void;
}

/** Words per block of the branch-free scan in `firstNonFinite`. */
const SCAN_BLOCK = 1024;

/**
 * Index of the first NaN or ±Inf in x, or -1: an exponent of all ones, read from the bits. Blocks
 * of u32 words are scanned without branches — shifted right by one, an exponent field of all ones
 * plus one carries into the bit above it — and the first flagged block value by value (a 4 096 ×
 * 768 f16 batch on this project's 2-core VM: ~6 ms through Number.isFinite, ~4 ms testing each
 * value's bits, ~1.7 ms this way).
 */
export function firstNonFinite(x: BatchValues): number {
  const f16 = x instanceof Float16Array;
  // Per word: f16 two exponent fields (bits 10–14 and 26–30), f32 one (bits 23–30).
  const [mask, one, carry] = f16
    ? [0x3e003e00, 0x02000200, 0x40004000]
    : [0x3fc00000, 0x00400000, 0x40000000];
  let from = 0;
  if (x.byteOffset % 4 === 0) {
    const w = new Uint32Array(x.buffer, x.byteOffset, f16 ? x.length >> 1 : x.length);
    for (; from < w.length; from += SCAN_BLOCK) {
      const end = Math.min(from + SCAN_BLOCK, w.length);
      let acc = 0;
      for (let i = from; i < end; i++) acc |= ((w[i] >>> 1) & mask) + one;
      if ((acc & carry) !== 0) break;
    }
    from = Math.min(from, w.length) * (f16 ? 2 : 1);
  }
  if (f16) {
    const u = new Uint16Array(x.buffer, x.byteOffset, x.length);
    for (let i = from; i < u.length; i++) if ((u[i] & 0x7c00) === 0x7c00) return i;
  } else {
    const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
    for (let i = from; i < u.length; i++) if ((u[i] & 0x7f800000) === 0x7f800000) return i;
  }
  return -1;
}

/** A stream of batches of raw activations. */
export interface BatchSource {
  /** Width of each row. */
  readonly dIn: number;
  /** Name for messages (a folder, or "in-memory data"). */
  readonly name: string;
  /** Next batch, or null when the data is exhausted. */
  next(): Promise<SourceBatch | null>;
  /** Release files. */
  close(): Promise<void>;
}

/** In-memory cursor: epoch and row offset of the next batch. */
interface ArrayCursor {
  format: "arbor-array-cursor";
  epoch: number;
  row: number;
}

/**
 * Batches of `batchSize` consecutive rows of x [rows, dIn], in order, for `epochs`
 * passes (default: endless); the last batch of a pass may be short.
 */
export function arraySource(
  x: Float32Array,
  dIn: number,
  batchSize: number,
  opts: { epochs?: number; cursor?: unknown; name?: string } = {},
): BatchSource {
  const total = x.length / dIn;
  if (!Number.isInteger(total) || total < 1) {
    throw new ArborError(
      `in-memory data: ${x.length} floats is not a whole number of rows of ${dIn}`,
    );
  }
  const epochs = opts.epochs ?? Infinity;
  const c = opts.cursor as ArrayCursor | undefined;
  if (c !== undefined && (c?.format !== "arbor-array-cursor" || !(c.row >= 0 && c.row <= total))) {
    throw new ArborError(`in-memory data: bad resume cursor ${JSON.stringify(c)}`);
  }
  let epoch = c?.epoch ?? 0;
  let row = c?.row ?? 0;
  return {
    dIn,
    name: opts.name ?? "in-memory data",
    next() {
      if (row >= total) {
        epoch++;
        row = 0;
      }
      if (epoch >= epochs) return Promise.resolve(null);
      const rows = Math.min(batchSize, total - row);
      const batch = x.slice(row * dIn, (row + rows) * dIn);
      row += rows;
      const cursor: ArrayCursor = { format: "arbor-array-cursor", epoch, row };
      return Promise.resolve({ x: batch, rows, cursor });
    },
    close: () => Promise.resolve(),
  };
}

/** A source over an activation store: its size and provenance too. */
export type StoreSource = BatchSource & {
  totalTokens: number;
  provenance: Record<string, unknown>;
  /** Give back a released batch's buffer for a later batch (what `SourceBatch.release` does). */
  recycle(buffer: ArrayBuffer): void;
};

/** Open an activation store for training, refusing one of another width than `expectDIn`. */
export async function openStore(dir: string, expectDIn?: number): Promise<ActivationReader> {
  const reader = await ActivationReader.open(dir, {});
  if (expectDIn !== undefined && reader.dIn !== expectDIn) {
    throw new ArborError(
      `${dir}: the dataset has d_in = ${reader.dIn} but the SAE expects d_in = ${expectDIn}; ` +
        "train on activations of the same width (same model and hook) or start a new run",
    );
  }
  return reader;
}

/** A store source's description: width, name, size and provenance. */
export function storeFields(dir: string, reader: ActivationReader) {
  return {
    dIn: reader.dIn,
    name: dir,
    totalTokens: reader.totalTokens,
    provenance: reader.manifest.provenance,
  };
}

/** Options of `storeSource`. */
export interface StoreSourceOptions {
  /** Rows per batch. */
  batchSize: number;
  /** Shuffle seed (rows are shuffled within a window, see lib/store). */
  seed: number;
  /** Refuse a dataset of another width. */
  expectDIn?: number;
  /** Resume position (a cursor from an earlier batch of the same options). */
  cursor?: unknown;
}

/**
 * Batches from an activation-store folder: shuffled, endless (epochs repeat). f16 stores give f16
 * batches: the trainer hands them to engines that widen them on the GPU (widening a 4 096 × 768
 * batch on the host took ~14 ms on this project's 2-core VM, more than an H200's whole step).
 */
export async function storeSource(dir: string, opts: StoreSourceOptions): Promise<StoreSource> {
  const reader = await openStore(dir, opts.expectDIn);
  const stream: BatchStream = reader.batches({
    batchSize: opts.batchSize,
    order: "shuffle",
    seed: opts.seed,
    epochs: Infinity,
    tokens: false,
    ...(opts.cursor ? { cursor: opts.cursor as ReadCursor } : {}),
  });
  return {
    ...storeFields(dir, reader),
    async next() {
      const b = await stream.nextBatch();
      if (!b) return null;
      const buffer = b.x.buffer as ArrayBuffer;
      return {
        x: batchValues(b),
        rows: b.rows,
        cursor: b.cursor,
        release: () => stream.recycle(buffer),
      };
    },
    recycle: (buffer) => stream.recycle(buffer),
    close: () => stream.close(),
  };
}
