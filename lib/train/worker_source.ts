/**
 * The activation store read ahead on another thread: `storeSource`'s batches (same rows, order
 * and cursors), read, shuffled and checked for NaN/±Inf in a Worker (./store_worker.ts) while
 * the trainer's thread records steps and waits for the GPU, which Deno's `mapAsync` does by
 * holding that thread. Read in the trainer's thread, a 4 096 × 768 f16 batch cost it 9–10 ms per
 * step on this project's 2-core VM (shard reads, the shuffle's row copies, the NaN check;
 * bench/train_input.ts), about an H200's whole step (11 ms); read ahead, ~1 ms.
 */
import { ArborError, DataError, GpuError } from "../errors.ts";
import {
  openStore,
  type SourceBatch,
  storeFields,
  type StoreSource,
  storeSource,
  type StoreSourceOptions,
} from "./batch_source.ts";

/** Batches the worker reads ahead of the trainer by default (~19 MB of f16 at 4 096 × 768). */
export const WORKER_READ_AHEAD = 3;

/** Options of `workerStoreSource`. */
export interface WorkerSourceOptions extends StoreSourceOptions {
  /** Batches read ahead (default WORKER_READ_AHEAD). */
  depth?: number;
  /** Called with a one-line notice when no worker could start and the store is read in-thread. */
  notice?: (line: string) => void;
  /** The worker module (default ./store_worker.ts; tests name a missing one to see the fallback). */
  workerUrl?: string;
}

/** The error the worker reported, as the class the trainer's thread would have thrown. */
function rebuild(name: string, message: string): Error {
  if (name === "DataError") return new DataError(message);
  if (name === "GpuError") return new GpuError(message);
  if (name === "ArborError") return new ArborError(message);
  const e = new Error(message);
  e.name = name;
  return e;
}

/**
 * `storeSource` read ahead in a Worker. Where no worker starts (a `deno compile` binary built
 * without `--include lib/train/store_worker.ts`), the store is read in this thread instead,
 * after a notice.
 */
export async function workerStoreSource(
  dir: string,
  opts: WorkerSourceOptions,
): Promise<StoreSource> {
  const reader = await openStore(dir, opts.expectDIn);
  const depth = opts.depth ?? WORKER_READ_AHEAD;
  if (!(Number.isInteger(depth) && depth >= 1)) {
    throw new ArborError(`workerStoreSource: depth must be an integer ≥ 1, got ${depth}`);
  }
  const { notice, depth: _, workerUrl, ...storeOpts } = opts;
  const inThread = (why: string) => {
    notice?.(`reading ${dir} in the trainer's thread (${why})`);
    return storeSource(dir, storeOpts);
  };
  let worker: Worker;
  try {
    // A literal URL, so that `deno compile --include lib/train/store_worker.ts` finds it.
    const url = workerUrl ?? new URL("./store_worker.ts", import.meta.url).href;
    worker = new Worker(url, { type: "module" });
  } catch (e) {
    return await inThread(`no worker: ${e instanceof Error ? e.message : e}`);
  }
  const items: (SourceBatch | null | Error)[] = [];
  let closed = false;
  // Back to the worker (transferred), which assembles a later batch in it.
  const recycle = (buffer: ArrayBuffer) => {
    if (!closed && buffer.byteLength > 0) worker.postMessage({ type: "recycle", buffer }, [buffer]);
  };
  let waiting: (() => void) | undefined;
  const push = (item: SourceBatch | null | Error) => {
    items.push(item);
    waiting?.();
    waiting = undefined;
  };
  // Settles once the worker has opened the store: ready, a store error, or no worker at all.
  let opened!: (r: "ready" | Error | { crashed: string }) => void;
  const open = new Promise<"ready" | Error | { crashed: string }>((r) => opened = r);
  worker.onmessage = (e: MessageEvent) => {
    const m = e.data;
    if (m.type === "ready") opened("ready");
    else if (m.type === "batch") {
      const x = m.f16 ? new Float16Array(m.buffer) : new Float32Array(m.buffer);
      push({
        x,
        rows: m.rows,
        cursor: m.cursor,
        nonFinite: m.nonFinite,
        release: () => recycle(m.buffer),
      });
    } else if (m.type === "end") push(null);
    else if (m.type === "error") {
      const err = rebuild(m.name, m.message);
      opened(err);
      push(err);
    }
  };
  worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    opened({ crashed: e.message });
    push(new ArborError(`${dir}: the thread reading the store failed: ${e.message}`));
  };
  worker.postMessage({
    type: "open",
    dir,
    batchSize: opts.batchSize,
    seed: opts.seed,
    depth,
    ...(opts.cursor !== undefined ? { cursor: opts.cursor } : {}),
  });
  const how = await open;
  if (how !== "ready") {
    worker.terminate();
    if (how instanceof Error) throw how;
    return await inThread(`its worker did not start: ${how.crashed}`);
  }
  return {
    ...storeFields(dir, reader),
    async next() {
      while (!items.length) await new Promise<void>((r) => waiting = r);
      const item = items[0];
      // The end and errors stay at the head: every later call sees them too.
      if (item === null) return null;
      if (item instanceof Error) throw item;
      items.shift();
      if (!closed) worker.postMessage({ type: "take" });
      return item;
    },
    recycle,
    close() {
      closed = true;
      worker.terminate();
      return Promise.resolve();
    },
  };
}
