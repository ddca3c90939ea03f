import assert from "node:assert/strict";
import { join } from "node:path";
import { randn } from "../_util.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { checksumHex } from "../../lib/store/checksum.ts";
import { type SourceBatch, storeSource } from "../../lib/train/batch_source.ts";
import { workerStoreSource } from "../../lib/train/worker_source.ts";
import { DataError } from "../../lib/errors.ts";

const D = 8;
const ROWS = 500;
const B = 64;

async function withStore(dtype: "f16" | "f32", fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "arbor_worker_src_" });
  try {
    // Shards of 100 rows: five shards, each a shuffle window; batches cross shards and epochs.
    const w = await ActivationWriter.create(dir, {
      dIn: D,
      dtype,
      shardTokens: 100,
      provenance: {},
    });
    await w.append(randn(ROWS * D, 7));
    await w.close();
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The batch's values as f32, copied (release gives the buffer away). */
const values = (b: SourceBatch) => Float32Array.from(b.x);

for (const dtype of ["f16", "f32"] as const) {
  Deno.test(`workerStoreSource gives storeSource's batches and cursors (${dtype}), buffers recycled`, async () => {
    await withStore(dtype, async (dir) => {
      const here = await storeSource(dir, { batchSize: B, seed: 5 });
      const there = await workerStoreSource(dir, { batchSize: B, seed: 5, depth: 2 });
      try {
        assert.equal(there.dIn, D);
        assert.equal(there.totalTokens, ROWS);
        // 20 batches: two and a half epochs, each buffer given back once read.
        for (let i = 0; i < 20; i++) {
          const want = (await here.next())!;
          const got = (await there.next())!;
          assert.equal(got.x instanceof Float16Array, dtype === "f16", "the store's type");
          assert.equal(got.rows, want.rows);
          assert.deepEqual(got.cursor, want.cursor, `batch ${i} cursor`);
          assert.deepEqual(values(got), values(want), `batch ${i} values`);
          assert.equal(got.nonFinite, -1, "the worker checked the values");
          got.release!();
          want.release!();
          assert.equal(got.x.length, 0, "the released buffer went back to the worker");
        }
      } finally {
        await here.close();
        await there.close();
      }
    });
  });
}

Deno.test("workerStoreSource resumes from a batch's cursor exactly", async () => {
  await withStore("f16", async (dir) => {
    const a = await workerStoreSource(dir, { batchSize: B, seed: 2 });
    let cursor: unknown;
    const rest: Float32Array[] = [];
    try {
      for (let i = 0; i < 6; i++) {
        const b = (await a.next())!;
        if (i === 2) cursor = b.cursor;
        if (i > 2) rest.push(values(b));
      }
    } finally {
      await a.close();
    }
    const b = await workerStoreSource(dir, { batchSize: B, seed: 2, cursor });
    try {
      for (const want of rest) assert.deepEqual(values((await b.next())!), want);
    } finally {
      await b.close();
    }
  });
});

Deno.test("workerStoreSource errors: another d_in, a foreign cursor, a corrupt shard (DataError, every later call too)", async () => {
  await withStore("f32", async (dir) => {
    await assert.rejects(
      () => workerStoreSource(dir, { batchSize: B, seed: 1, expectDIn: D + 1 }),
      /the dataset has d_in = 8 but the SAE expects d_in = 9/,
    );
    await assert.rejects(
      () => workerStoreSource(dir, { batchSize: B, seed: 1, cursor: { format: "other" } }),
      (e: Error) => e instanceof DataError && /not an Arbor read cursor/.test(e.message),
    );
    // Corrupt the third shard's bytes, keeping the manifest's checksum: found when it is read.
    const manifest = JSON.parse(await Deno.readTextFile(join(dir, "manifest.json")));
    const shard = join(dir, manifest.shards[2].file);
    const bytes = await Deno.readFile(shard);
    bytes[5] ^= 0xff;
    await Deno.writeFile(shard, bytes);
    assert.notEqual(checksumHex(bytes), manifest.shards[2].checksum);
    const src = await workerStoreSource(dir, { batchSize: B, seed: 1 });
    try {
      let err: unknown;
      for (let i = 0; i < 10 && !err; i++) await src.next().catch((e) => err = e);
      assert.ok(err instanceof DataError, `${err}`);
      assert.match((err as Error).message, /checksum mismatch/);
      await assert.rejects(() => src.next(), /checksum mismatch/);
    } finally {
      await src.close();
    }
  });
});

Deno.test("workerStoreSource reads in this thread, after a notice, where its worker cannot start", async () => {
  await withStore("f16", async (dir) => {
    const notices: string[] = [];
    const src = await workerStoreSource(dir, {
      batchSize: B,
      seed: 3,
      // A module that fails as it loads, as a missing one does in a compiled binary (Deno prints
      // the worker's error below the test's name: expected).
      workerUrl: "data:application/javascript,throw new Error('module not found')",
      notice: (l) => notices.push(l),
    });
    const here = await storeSource(dir, { batchSize: B, seed: 3 });
    try {
      assert.equal(notices.length, 1);
      assert.match(
        notices[0],
        /reading .* in the trainer's thread \(its worker did not start: .*module not found/,
      );
      for (let i = 0; i < 3; i++) {
        assert.deepEqual(values((await src.next())!), values((await here.next())!));
      }
    } finally {
      await src.close();
      await here.close();
    }
  });
});
