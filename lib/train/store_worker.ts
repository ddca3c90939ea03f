/**
 * The thread behind `workerStoreSource` (./worker_source.ts): it opens the activation store,
 * reads, shuffles and checks batches (`storeSource`), and transfers each batch's buffer to the
 * trainer's thread, at most `depth` batches ahead of those taken.
 *
 * Messages in:  { type: "open", dir, batchSize, seed, cursor?, depth }, then { type: "take" }
 *               each time the trainer takes a batch and { type: "recycle", buffer } when it
 *               gives one back (transferred; a later batch is assembled in it).
 * Messages out: { type: "ready" } once open; { type: "batch", f16, buffer, rows, cursor,
 *               nonFinite } per batch (buffer transferred); { type: "end" }; { type: "error",
 *               name, message } (then nothing more).
 */
/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
import { firstNonFinite, type StoreSource, storeSource } from "./batch_source.ts";

/** Batches this thread may still send before the trainer takes one. */
let credit = 0;
let wake: (() => void) | undefined;
/** The open source (buffers given back before it opens are dropped). */
let source: StoreSource | undefined;

self.onmessage = (e: MessageEvent) => {
  const m = e.data;
  if (m.type === "open") {
    credit = m.depth;
    void run(m);
  } else if (m.type === "take") {
    credit++;
    wake?.();
    wake = undefined;
  } else if (m.type === "recycle") source?.recycle(m.buffer);
};

async function run(m: { dir: string; batchSize: number; seed: number; cursor?: unknown }) {
  try {
    const src = source = await storeSource(m.dir, {
      batchSize: m.batchSize,
      seed: m.seed,
      ...(m.cursor !== undefined ? { cursor: m.cursor } : {}),
    });
    self.postMessage({ type: "ready" });
    for (;;) {
      while (credit === 0) await new Promise<void>((r) => wake = r);
      const b = await src.next();
      if (!b) break;
      credit--;
      // A buffer of its own to transfer (the stream's batches have one; a view would copy).
      const whole = b.x.byteOffset === 0 && b.x.byteLength === b.x.buffer.byteLength;
      const x = whole ? b.x : b.x.slice();
      self.postMessage(
        {
          type: "batch",
          f16: x instanceof Float16Array,
          buffer: x.buffer,
          rows: b.rows,
          cursor: b.cursor,
          nonFinite: firstNonFinite(x),
        },
        [x.buffer as ArrayBuffer],
      );
    }
    await src.close();
    self.postMessage({ type: "end" });
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    self.postMessage({ type: "error", name: err.name, message: err.message });
  }
}
