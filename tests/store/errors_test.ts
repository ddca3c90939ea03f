/**
 * Bad input gets a DataError naming the file and the fix, and never changes a file
 * already on disk (every test hashes the folder before and after).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DataError } from "../../lib/errors.ts";
import { ActivationWriter, type WriterOptions } from "../../lib/store/writer.ts";
import { ActivationReader, readAllF32 } from "../../lib/store/reader.ts";
import { hashDir, taggedRows, tagTokens, tempDir } from "./_store_util.ts";

const D = 8;
const OPTS: WriterOptions = {
  dIn: D,
  dtype: "f16",
  shardTokens: 10,
  provenance: { model: "m" },
  tokens: true,
};

/** A complete dataset of 25 rows (3 shards) in a fresh folder. */
async function dataset(opts: Partial<WriterOptions> = {}): Promise<string> {
  const dir = join(await tempDir(), "ds");
  const w = await ActivationWriter.create(dir, { ...OPTS, ...opts });
  await w.append(taggedRows(0, 25, D), tagTokens(0, 25));
  await w.close();
  return dir;
}

/** Run `fn`, expect a DataError whose message matches every pattern, and check `dir` is unchanged. */
async function expectRefused(dir: string, fn: () => Promise<unknown>, ...patterns: RegExp[]) {
  const before = await hashDir(dir);
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof DataError, `expected DataError, got ${e}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
  assert.deepEqual(await hashDir(dir), before, "files on disk changed");
}

async function editManifest(dir: string, edit: (m: Record<string, unknown>) => void) {
  const path = join(dir, "manifest.json");
  const m = JSON.parse(await Deno.readTextFile(path));
  edit(m);
  await Deno.writeTextFile(path, JSON.stringify(m));
}

async function cleanup(dir: string) {
  await Deno.remove(join(dir, ".."), { recursive: true });
}

Deno.test("reader: missing manifest names the file and what a dataset folder holds", async () => {
  const dir = await dataset();
  await Deno.remove(join(dir, "manifest.json"));
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /manifest\.json: manifest not found/,
    /shard-NNNNN\.bin/,
  );
  await cleanup(dir);
});

Deno.test("reader: corrupt manifest JSON is refused", async () => {
  const dir = await dataset();
  await Deno.writeTextFile(join(dir, "manifest.json"), '{"format": "arbor-activations", ');
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /manifest\.json: manifest is not valid JSON/,
    /regenerate/,
  );
  await cleanup(dir);
});

Deno.test("reader: unknown format version is refused with upgrade advice", async () => {
  const dir = await dataset();
  await editManifest(dir, (m) => (m.version = 2));
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /manifest\.json: field "version" is 2 but this Arbor reads version 1/,
    /upgrade Arbor/,
  );
  await cleanup(dir);
});

Deno.test("reader: unknown manifest keys and bad field types are refused, naming the field", async () => {
  const dir = await dataset();
  await editManifest(dir, (m) => (m.colour = "blue"));
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /field "colour" is not part of format arbor-activations v1/,
  );
  await editManifest(dir, (m) => {
    delete m.colour;
    (m.shards as Record<string, unknown>[])[1].extra = 1;
  });
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /field "shards\[1\]\.extra" is not part/,
  );
  await editManifest(dir, (m) => {
    delete (m.shards as Record<string, unknown>[])[1].extra;
    m.d_in = "eight";
  });
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /field "d_in" must be an integer ≥ 1, got "eight"/,
  );
  await editManifest(dir, (m) => {
    m.d_in = D;
    m.total_tokens = 26;
  });
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /field "total_tokens" is 26 but the shards hold 25 rows/,
  );
  await cleanup(dir);
});

Deno.test("reader: d_in and dtype mismatches against the expected values are refused", async () => {
  const dir = await dataset();
  await expectRefused(
    dir,
    () => ActivationReader.open(dir, { expectDIn: 16 }),
    /manifest\.json: d_in is 8 but 16 was expected/,
    /hook of width 16/,
  );
  await expectRefused(
    dir,
    () => ActivationReader.open(dir, { expectDtype: "f32" }),
    /manifest\.json: dtype is f16 but f32 was expected/,
  );
  await cleanup(dir);
});

Deno.test("reader: truncated and missing shards are refused at open", async () => {
  const dir = await dataset();
  const shard = join(dir, "shard-00001.bin");
  const bytes = await Deno.readFile(shard);
  await Deno.writeFile(shard, bytes.subarray(0, bytes.length - 6));
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /shard-00001\.bin: size is 154 bytes but manifest\.json implies 160/,
    /truncated/,
  );
  await Deno.remove(shard);
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /shard-00001\.bin: file listed in manifest\.json is missing/,
  );
  await Deno.writeFile(shard, bytes);
  await Deno.remove(join(dir, "tokens-00002.bin"));
  await expectRefused(
    dir,
    () => ActivationReader.open(dir),
    /tokens-00002\.bin: file listed in manifest\.json is missing/,
  );
  await cleanup(dir);
});

Deno.test("reader: a checksum mismatch is caught when the shard is read", async () => {
  const dir = await dataset();
  const shard = join(dir, "shard-00002.bin");
  const bytes = await Deno.readFile(shard);
  bytes[3] ^= 0x40;
  await Deno.writeFile(shard, bytes);
  const reader = await ActivationReader.open(dir); // sizes are fine; content is checked on read
  await expectRefused(
    dir,
    async () => {
      for await (const _ of reader.batches({ batchSize: 4 })) { /* read until the bad shard */ }
    },
    /shard-00002\.bin: checksum mismatch \(crc32 [0-9a-f]{8} on disk, [0-9a-f]{8} in manifest\.json\)/,
    /corrupt/,
  );
  await expectRefused(dir, () => reader.verifyAll(), /shard-00002\.bin: checksum mismatch/);
  await expectRefused(dir, () => readAllF32(dir), /shard-00002\.bin: checksum mismatch/);
  await cleanup(dir);
});

Deno.test("reader: an incomplete dataset is refused unless allowIncomplete", async () => {
  const dir = join(await tempDir(), "ds");
  const w = await ActivationWriter.create(dir, OPTS);
  await w.append(taggedRows(0, 25, D), tagTokens(0, 25)); // 2 shards flushed, never closed
  await expectRefused(dir, () => ActivationReader.open(dir), /dataset is incomplete/, /--resume/);
  const r = await ActivationReader.open(dir, { allowIncomplete: true });
  assert.equal(r.totalTokens, 20);
  await cleanup(dir);
});

Deno.test("writer: NaN/Inf rows throw under policy error, leaving earlier shards untouched", async () => {
  const dir = join(await tempDir(), "ds");
  const w = await ActivationWriter.create(dir, OPTS);
  await w.append(taggedRows(0, 20, D), tagTokens(0, 20));
  const bad = taggedRows(20, 5, D);
  bad[2 * D + 3] = NaN;
  await expectRefused(
    dir,
    () => w.append(bad, tagTokens(20, 5)),
    /input row 22 holds NaN at column 3/,
    /nanPolicy "skip" \(--nan skip\)/,
  );
  bad[2 * D + 3] = 0;
  bad[4 * D] = 70000; // finite in f32, Inf in f16
  await expectRefused(
    dir,
    () => w.append(bad, tagTokens(20, 5)),
    /input row 24 holds 70000 at column 0 \(NaN, ±Inf and \|x\| > 65504 do not fit f16\)/,
  );
  bad[4 * D] = -Infinity;
  await expectRefused(dir, () => w.append(bad, tagTokens(20, 5)), /input row 24 holds -Infinity/);
  assert.equal(w.rowsWritten, 20);
  await cleanup(dir);
});

Deno.test("writer: NaN/Inf rows are skipped, counted, returned and recorded under policy skip", async () => {
  const dir = join(await tempDir(), "ds");
  const w = await ActivationWriter.create(dir, { ...OPTS, dtype: "f32", nanPolicy: "skip" });
  const x = taggedRows(0, 30, D);
  x[0] = NaN;
  x[7 * D + 5] = Infinity;
  x[29 * D] = -Infinity;
  assert.deepEqual(await w.append(x, tagTokens(0, 30)), { written: 27, skipped: 3 });
  const m = await w.close();
  assert.equal(m.skipped_rows, 3);
  assert.equal(m.total_tokens, 27);
  const all = await readAllF32(dir);
  assert.deepEqual(
    Array.from(all.tokens!.tokenIds),
    Array.from({ length: 30 }, (_, i) => i).filter((i) => ![0, 7, 29].includes(i)),
  );
  await cleanup(dir);
});

Deno.test("writer: a folder holding a different dataset is refused unless overwrite", async () => {
  const dir = await dataset();
  await expectRefused(
    dir,
    () => ActivationWriter.create(dir, { ...OPTS, dIn: 16 }),
    /already holds a different dataset \(d_in 8 on disk, 16 requested\)/,
    /pass overwrite \(--overwrite\)/,
  );
  await expectRefused(
    dir,
    () => ActivationWriter.create(dir, { ...OPTS, provenance: { model: "other" }, resume: true }),
    /different dataset \(provenance .*"model":"m".* on disk/,
  );
  await expectRefused(
    dir,
    () => ActivationWriter.create(dir, OPTS),
    /already holds this dataset \(25 rows\); pass resume \(--resume\) to continue it, or overwrite/,
  );
  // Invalid options are rejected before overwrite removes anything.
  await expectRefused(
    dir,
    () => ActivationWriter.create(dir, { ...OPTS, dIn: 0, overwrite: true }),
    /writer option dIn must be a positive integer/,
  );
  const w = await ActivationWriter.create(dir, { ...OPTS, dIn: 4, overwrite: true });
  await w.append(taggedRows(0, 3, 4), tagTokens(0, 3));
  await w.close();
  assert.deepEqual(Object.keys(await hashDir(dir)), [
    "manifest.json",
    "shard-00000.bin",
    "tokens-00000.bin",
  ]);
  assert.equal((await readAllF32(dir)).dIn, 4);
  await cleanup(dir);
});

Deno.test("writer: a non-empty folder without a manifest, or with a corrupt one, is refused", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(join(dir, "notes.txt"), "mine");
  await expectRefused(
    dir,
    () => ActivationWriter.create(dir, OPTS),
    /output folder is not empty and holds no manifest\.json \(found notes\.txt\)/,
  );
  await Deno.writeTextFile(join(dir, "manifest.json"), "{");
  await expectRefused(
    dir,
    () => ActivationWriter.create(dir, OPTS),
    /output folder holds an unreadable dataset .*not valid JSON.*pass overwrite/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("reader: a cursor from another dataset or other read options is refused", async () => {
  const dir = await dataset();
  const other = await dataset({ provenance: { model: "n" }, dtype: "f32" });
  const r1 = await ActivationReader.open(dir), r2 = await ActivationReader.open(other);
  const s = r1.batches({ batchSize: 4, order: "shuffle", seed: 1 });
  const b = (await s.nextBatch())!;
  await s.close();
  assert.throws(
    () => r2.batches({ batchSize: 4, order: "shuffle", seed: 1, cursor: b.cursor }),
    /different dataset or read options/,
  );
  assert.throws(
    () => r1.batches({ batchSize: 4, order: "shuffle", seed: 2, cursor: b.cursor }),
    /resume with the same dataset, order, seed and shuffleRows/,
  );
  assert.throws(
    () =>
      r1.batches({ batchSize: 4, order: "shuffle", seed: 1, cursor: { ...b.cursor, rows: 99 } }),
    /rows 99 out of range/,
  );
  await cleanup(dir);
  await cleanup(other);
});

Deno.test("writer: a failed overwrite leaves the old dataset intact; resuming it then replaces the old one", async () => {
  const dir = await dataset();
  const before = await hashDir(dir);
  const opts: WriterOptions = { ...OPTS, dIn: 4, overwrite: true };
  const w = await ActivationWriter.create(dir, opts);
  await w.append(taggedRows(0, 12, 4), tagTokens(0, 12)); // one new shard flushed (to staging)
  const bad = taggedRows(12, 3, 4);
  bad[5] = NaN;
  await expectRefused(dir, () => w.append(bad, tagTokens(12, 3)), /input row 13 holds NaN/);
  assert.deepEqual(await hashDir(dir), before, "old dataset changed by a failed overwrite");
  assert.equal((await readAllF32(dir)).rows, 25, "old dataset no longer readable");
  // The interrupted overwrite resumes from its staged shard.
  const w2 = await ActivationWriter.create(dir, { ...opts, resume: true });
  assert.equal(w2.rowsDone, 10);
  await w2.append(taggedRows(10, 5, 4), tagTokens(10, 5));
  await w2.close();
  assert.deepEqual(Object.keys(await hashDir(dir)), [
    "manifest.json",
    "shard-00000.bin",
    "shard-00001.bin",
    "tokens-00000.bin",
    "tokens-00001.bin",
  ]);
  const all = await readAllF32(dir);
  assert.equal(all.dIn, 4);
  assert.deepEqual(Array.from(all.tokens!.tokenIds), Array.from({ length: 15 }, (_, i) => i));
  await assert.rejects(() => Deno.stat(join(dir, ".arbor-staging")), Deno.errors.NotFound);
  await cleanup(dir);
});

Deno.test("writer: an overwrite that died while moving its files in is finished on the next open", async () => {
  const dir = await dataset();
  // The new dataset, complete, as the staging folder would hold it.
  const fresh = join(dir, "..", "fresh");
  const wf = await ActivationWriter.create(fresh, { ...OPTS, dIn: 4 });
  await wf.append(taggedRows(0, 15, 4), tagTokens(0, 15));
  await wf.close();
  const want = await hashDir(fresh);
  const staging = join(dir, ".arbor-staging");
  await Deno.mkdir(staging);
  for (const name of Object.keys(want)) await Deno.copyFile(join(fresh, name), join(staging, name));
  // Crash state: old manifest removed and one new shard already moved over an old one.
  await Deno.remove(join(dir, "manifest.json"));
  await Deno.rename(join(staging, "shard-00000.bin"), join(dir, "shard-00000.bin"));
  const w = await ActivationWriter.create(dir, { ...OPTS, dIn: 4, resume: true });
  assert.equal(w.rowsDone, 15);
  await w.close();
  assert.deepEqual(await hashDir(dir), want);
  await cleanup(dir);
});
