/**
 * The trainer's input against the GPU's step: how long each step takes when the trainer's thread
 * reads its batches from an f16 activation store, in that thread (`storeSource`) or read ahead on
 * another (`workerStoreSource`), while a GPU step of S ms holds the thread as Deno's `mapAsync`
 * does (a blocking wait). Per batch: the next batch, the NaN check, then the step; the batch's
 * buffer is given back as the trainer does after its upload.
 *
 *   deno run -A bench/train_input.ts [--rows 700000] [--batch 4096] [--step-ms 11,0]
 *
 * Writes a temporary store of `--rows` rows of d = 768 (64 MiB shards; 1.1 GB at the default),
 * times 150 batches after 20 untimed, alternating the two sources for each S, and prints ms per
 * step and what the input adds to S. A new epoch starts with a shard read cold (nothing
 * prefetched across the epoch's end): with few shards per epoch those reads weigh more. S = 11 is an H200's TopK step at n = 24 576 (bench/README.md); S = 0 gives the input's
 * own rate. Results go in bench/README.md under "Store".
 */
import { helpFromHeader } from "./_help.ts";
import { parseArgs } from "node:util";
import { ActivationWriter } from "../lib/store/writer.ts";
import { type BatchSource, storeSource } from "../lib/train/batch_source.ts";
import { workerStoreSource } from "../lib/train/worker_source.ts";
import { checkFinite } from "../lib/train/trainer.ts";

await helpFromHeader(import.meta.url);

/** GPT-2 small's residual width. */
const D = 768;
/** Rows per `append` while writing the store. */
const CHUNK = 8192;
/** Batches timed, after WARM untimed ones (the first shard loads). */
const TIMED = 150;
const WARM = 20;

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "700000" },
    batch: { type: "string", default: "4096" },
    "step-ms": { type: "string", default: "11,0" },
  },
});
const rows = Number(values.rows);
const batch = Number(values.batch);
const steps = values["step-ms"]!.split(",").map(Number);

/** Mean ms per step over TIMED batches of `src` with a blocking wait of `stepMs` per step. */
async function time(src: BatchSource, stepMs: number): Promise<number> {
  const lock = new Int32Array(new SharedArrayBuffer(4));
  let t0 = 0;
  for (let i = 0; i < WARM + TIMED; i++) {
    if (i === WARM) t0 = performance.now();
    const b = (await src.next())!;
    checkFinite(b, src.name, 0);
    if (stepMs > 0) Atomics.wait(lock, 0, 0, stepMs);
    b.release?.();
  }
  return (performance.now() - t0) / TIMED;
}

const dir = await Deno.makeTempDir({ prefix: "arbor_train_input_" });
try {
  const data = new Float32Array(CHUNK * D);
  for (let i = 0; i < data.length; i++) data[i] = (Math.random() + Math.random() - 1) * 2;
  const w = await ActivationWriter.create(dir, { dIn: D, dtype: "f16", provenance: {} });
  for (let s = 0; s < rows; s += CHUNK) {
    await w.append(data.subarray(0, Math.min(CHUNK, rows - s) * D));
  }
  await w.close();
  console.log(`f16 store of ${rows} rows × ${D}, batches of ${batch}; ms per step:`);
  for (const stepMs of steps) {
    for (const how of ["in-thread", "worker"] as const) {
      const opts = { batchSize: batch, seed: 1 };
      const src = how === "worker"
        ? await workerStoreSource(dir, opts)
        : await storeSource(dir, opts);
      try {
        const ms = await time(src, stepMs);
        console.log(
          `  step ${stepMs} ms, ${how.padEnd(9)}: ${ms.toFixed(1)} ms (input adds ${
            (ms - stepMs).toFixed(1)
          })`,
        );
      } finally {
        await src.close();
      }
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
