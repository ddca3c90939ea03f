/**
 * Resume: an interrupted writer continues after its last complete shard and ends with
 * the same bytes as an uninterrupted write; a reader resumed from a saved cursor emits
 * exactly the rows an uninterrupted stream would have.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ActivationWriter, type WriterOptions } from "../../lib/store/writer.ts";
import { ActivationReader } from "../../lib/store/reader.ts";
import type { BatchOptions, ReadCursor } from "../../lib/store/batch_stream.ts";
import { hashDir, taggedRows, tagTokens, tempDir } from "./_store_util.ts";

const D = 24;
const N = 1000;
const OPTS: WriterOptions = {
  dIn: D,
  dtype: "f16",
  shardTokens: 128,
  provenance: { model: "m", layer: 3, seed: 7 },
  tokens: true,
  nanPolicy: "skip",
};
const BAD = new Set([5, 130, 131, 640, 641, 999]); // NaN rows, some on shard boundaries

/** Input rows [s, e) with NaN in the BAD rows. */
function input(s: number, e: number) {
  const x = taggedRows(s, e - s, D);
  for (let i = s; i < e; i++) if (BAD.has(i)) x[(i - s) * D + 1] = NaN;
  return { x, t: tagTokens(s, e - s) };
}

/** Feed input rows [from, to) in chunks of `chunk`. */
async function feed(w: ActivationWriter, from: number, to: number, chunk: number) {
  for (let s = from; s < to; s += chunk) {
    const { x, t } = input(s, Math.min(to, s + chunk));
    await w.append(x, t);
  }
}

Deno.test("an interrupted writer resumed after its last complete shard gives the same bytes as an uninterrupted one", async () => {
  const root = await tempDir();
  try {
    const a = join(root, "a"), b = join(root, "b");
    const wa = await ActivationWriter.create(a, OPTS);
    await feed(wa, 0, N, 100);
    const ma = await wa.close();
    assert.equal(ma.skipped_rows, BAD.size);
    assert.equal(ma.total_tokens, N - BAD.size);

    // Run 1 dies after input row 700: 5 shards (640 stored rows) are complete, the rest is lost.
    const w1 = await ActivationWriter.create(b, OPTS);
    await assert.rejects(async () => {
      await feed(w1, 0, 700, 70);
      throw new Error("simulated crash");
    }, /simulated crash/);
    await Deno.writeFile(join(b, "shard-00005.bin.tmp"), new Uint8Array([1, 2, 3])); // a half-written shard
    const onDisk = await hashDir(b);

    // Run 2 refuses to silently start over, then resumes.
    await assert.rejects(() => ActivationWriter.create(b, OPTS), /already holds this dataset/);
    assert.deepEqual(await hashDir(b), onDisk);
    const w2 = await ActivationWriter.resume(b, { nanPolicy: "skip" });
    // 5 full shards = 640 stored rows, the last being input row 642; the NaN input rows
    // 5, 130, 131, 640, 641 before it were skipped, so input rows 0..644 are done.
    assert.equal(w2.rowsDone, 640 + 5);
    await feed(w2, w2.rowsDone, N, 77);
    await w2.close();
    assert.deepEqual(await hashDir(b), await hashDir(a));

    // Resuming the complete dataset reports every row done and changes nothing.
    const before = await hashDir(b);
    const w3 = await ActivationWriter.create(b, { ...OPTS, resume: true });
    assert.equal(w3.rowsDone, N);
    await assert.rejects(() => feed(w3, N - 1, N, 1), /already complete/);
    await w3.close();
    assert.deepEqual(await hashDir(b), before);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** Token ids of every row a stream emits. */
async function ids(reader: ActivationReader, opts: BatchOptions, stopAfter = Infinity) {
  const out: number[] = [];
  let cursor: ReadCursor | undefined;
  let batches = 0;
  const stream = reader.batches(opts);
  for await (const batch of stream) {
    out.push(...batch.tokens!.tokenIds);
    cursor = batch.cursor;
    if (++batches === stopAfter) break;
  }
  return { out, cursor };
}

Deno.test("a reader resumed from a JSON cursor continues exactly (sequential and shuffle, across epochs and batch sizes)", async () => {
  const dir = join(await tempDir(), "ds");
  try {
    const w = await ActivationWriter.create(dir, { ...OPTS, nanPolicy: "error" });
    await w.append(taggedRows(0, N, D), tagTokens(0, N));
    await w.close();
    const reader = await ActivationReader.open(dir);
    for (const order of ["sequential", "shuffle"] as const) {
      const opts = { batchSize: 48, order, seed: 9, shuffleRows: 300, epochs: 3 };
      const full = (await ids(reader, opts)).out;
      assert.equal(full.length, 3 * N);
      for (let e = 0; e < 3; e++) {
        assert.equal(
          new Set(full.slice(e * N, (e + 1) * N)).size,
          N,
          `${order} epoch ${e}: each row once`,
        );
      }
      if (order === "shuffle") {
        assert.notDeepEqual(full.slice(0, N), full.slice(N, 2 * N), "each epoch has its own order");
      }
      for (const stop of [1, 7, 21, 30]) {
        const head = await ids(reader, opts, stop);
        const cursor = JSON.parse(JSON.stringify(head.cursor));
        // A different batch size after resuming still continues row for row.
        const tail = await ids(reader, { ...opts, batchSize: 100, cursor });
        assert.deepEqual(
          [...head.out, ...tail.out],
          full,
          `${order}: resume after ${stop} batches`,
        );
      }
    }
  } finally {
    await Deno.remove(join(dir, ".."), { recursive: true });
  }
});
