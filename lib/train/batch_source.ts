/**
 * Where the trainer's batches come from: a small interface with two implementations,
 * an in-memory array (tests, synthetic data) and the sharded activation store. Both
 * give a JSON cursor after each batch so a resumed run sees exactly the rows an
 * uninterrupted one would have.
 */
import { ArborError } from "../errors.ts";
import { ActivationReader, batchF32 } from "../store/reader.ts";
import type { BatchStream, ReadCursor } from "../store/batch_stream.ts";

/** One batch of raw activations. */
export interface SourceBatch {
  /** [rows, dIn] f32, row-major. */
  x: Float32Array;
  /** Rows in this batch. */
  rows: number;
  /** Position after this batch (JSON); pass it back when reopening to resume. */
  cursor: unknown;
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

/** Batches from an activation-store folder: shuffled, endless (epochs repeat), f16 widened to f32. */
export async function storeSource(
  dir: string,
  opts: StoreSourceOptions,
): Promise<BatchSource & { totalTokens: number; provenance: Record<string, unknown> }> {
  const reader = await ActivationReader.open(dir, {});
  if (opts.expectDIn !== undefined && reader.dIn !== opts.expectDIn) {
    throw new ArborError(
      `${dir}: the dataset has d_in = ${reader.dIn} but the SAE expects d_in = ${opts.expectDIn}; ` +
        "train on activations of the same width (same model and hook) or start a new run",
    );
  }
  const stream: BatchStream = reader.batches({
    batchSize: opts.batchSize,
    order: "shuffle",
    seed: opts.seed,
    epochs: Infinity,
    tokens: false,
    ...(opts.cursor ? { cursor: opts.cursor as ReadCursor } : {}),
  });
  return {
    dIn: reader.dIn,
    name: dir,
    totalTokens: reader.totalTokens,
    provenance: reader.manifest.provenance,
    async next() {
      const b = await stream.nextBatch();
      if (!b) return null;
      return { x: batchF32(b), rows: b.rows, cursor: b.cursor };
    },
    close: () => stream.close(),
  };
}
