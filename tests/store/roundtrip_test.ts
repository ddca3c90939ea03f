/**
 * Store round trip (issue 2 acceptance): 100k rows of d=768 written as f16 over ≥ 3
 * shards, read back sequential and shuffled: every row exactly once, values equal to
 * their f16 rounding, and the reader's held memory bounded.
 */
import assert from "node:assert/strict";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { ActivationReader, batchF32, readAllF32, toGpu } from "../../lib/store/reader.ts";
import { f16BitsToF32, f32ToF16Bits } from "../../lib/util/f16.ts";
import { readF32 } from "../../lib/gpu/buffer.ts";
import { assertClose, randn, testGpu } from "../_util.ts";
import { taggedRows, tagTokens, tempDir } from "./_store_util.ts";

const N = 100_000;
const D = 768;
const SHARD = 32_768; // → 4 shards (3 full + 1696 rows)
const TABLE = 4096;

/** Values come from a table so a row's expected f16 bits follow from its id: row i, column j → T[(7i + j) mod 4096]. */
const T = randn(TABLE, 11).map((v) => v * 3);
const E = Uint16Array.from(T, (v) => f32ToF16Bits(v));

function rowsFor(start: number, n: number): Float32Array {
  const x = new Float32Array(n * D);
  for (let r = 0; r < n; r++) {
    const base = (7 * (start + r)) % TABLE;
    for (let j = 0; j < D; j++) x[r * D + j] = T[(base + j) % TABLE];
  }
  return x;
}

async function writeBig(dir: string) {
  const w = await ActivationWriter.create(dir, {
    dIn: D,
    dtype: "f16",
    shardTokens: SHARD,
    provenance: { model: "synthetic-table", layer: 0, seed: 11 },
    tokens: true,
  });
  const CHUNK = 10_000;
  for (let s = 0; s < N; s += CHUNK) {
    const n = Math.min(CHUNK, N - s);
    const res = await w.append(rowsFor(s, n), tagTokens(s, n));
    assert.deepEqual(res, { written: n, skipped: 0 });
  }
  return await w.close();
}

Deno.test("store round trip: 100k×768 f16 over 4 shards, sequential and shuffled, each row once with f16-rounded values, bounded memory", async () => {
  const dir = await tempDir();
  try {
    const m = await writeBig(dir);
    assert.equal(m.shards.length, 4);
    assert.equal(m.total_tokens, N);
    assert.equal(m.complete, true);
    const reader = await ActivationReader.open(dir, { expectDIn: D, expectDtype: "f16" });
    const shardBytes = SHARD * (D * 2 + 12);
    for (const order of ["sequential", "shuffle"] as const) {
      const WINDOW = 12_000;
      const stream = reader.batches({ batchSize: 4096, order, seed: 5, shuffleRows: WINDOW });
      const seen = new Uint8Array(N);
      const tags: number[] = [];
      let rows = 0;
      let heldAfterFirst = -1;
      for await (const b of stream) {
        if (heldAfterFirst < 0) heldAfterFirst = stream.heldBytes();
        assert.ok(b.x instanceof Uint16Array);
        const ids = b.tokens!.tokenIds;
        for (let r = 0; r < b.rows; r++) {
          const i = ids[r];
          assert.equal(seen[i], 0, `${order}: row ${i} emitted twice`);
          seen[i] = 1;
          assert.equal(b.tokens!.docIds[r], i >>> 6);
          assert.equal(b.tokens!.positions[r], i & 63);
          const base = (7 * i) % TABLE;
          const x = b.x as Uint16Array;
          for (let j = 0; j < D; j++) {
            if (x[r * D + j] !== E[(base + j) % TABLE]) {
              assert.fail(
                `${order}: row ${i} col ${j}: bits ${x[r * D + j]} != f16 rounding ${
                  E[(base + j) % TABLE]
                }`,
              );
            }
          }
          if (tags.length < 1000) tags.push(i);
        }
        rows += b.rows;
      }
      assert.equal(rows, N);
      assert.equal(seen.reduce((a, v) => a + v, 0), N, `${order}: every row exactly once`);
      const inOrder = tags.filter((t, k) => k > 0 && t === tags[k - 1] + 1).length;
      if (order === "sequential") assert.equal(inOrder, tags.length - 1);
      else assert.ok(inOrder < 20, `shuffle left ${inOrder}/999 neighbours in order`);
      // Bounded memory: current shard + prefetched shard + shuffle window, never the dataset.
      const windowBytes = order === "shuffle" ? WINDOW * (D * 2 + 12) : 0;
      assert.ok(
        stream.maxHeldBytes() <= 2 * shardBytes + windowBytes,
        `${order}: held ${stream.maxHeldBytes()}`,
      );
      assert.ok(stream.maxHeldBytes() >= shardBytes, `${order}: held accounting too low`);
      assert.equal(stream.heldBytes(), 0, `${order}: bytes still held after the stream ended`);
      // After the first batch the next shard is already being read in the background.
      const windowHeld = order === "shuffle" ? WINDOW * (D * 2 + 12) : 0;
      assert.equal(
        heldAfterFirst,
        2 * shardBytes + windowHeld,
        `${order}: next shard not prefetched`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("f32 datasets round trip exactly; readAllF32 and batchF32 agree with the written values", async () => {
  const dir = await tempDir();
  try {
    const d = 37, n = 1001;
    const x = taggedRows(0, n, d);
    const w = await ActivationWriter.create(dir, {
      dIn: d,
      dtype: "f32",
      shardBytes: 4096,
      provenance: {},
    });
    await w.append(x.subarray(0, 500 * d));
    await w.append(x.subarray(500 * d));
    const m = await w.close({ stats: { mean_norm: 1.5 } });
    assert.equal(m.shard_tokens, Math.floor(4096 / (d * 4)));
    assert.equal(m.shards.length, Math.ceil(n / m.shard_tokens));
    const all = await readAllF32(dir);
    assert.deepEqual(all.x, x);
    assert.equal(all.tokens, undefined);
    assert.deepEqual(all.manifest.stats, { mean_norm: 1.5 });
    const reader = await ActivationReader.open(dir);
    const got = new Float32Array(n * d);
    let at = 0;
    for await (const b of reader.batches({ batchSize: 64 })) {
      got.set(batchF32(b), at);
      at += b.rows * d;
    }
    assert.deepEqual(got, x);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("toGpu uploads f16 batches widened to f32 and f32 batches as they are", async () => {
  const gpu = await testGpu();
  const dir = await tempDir();
  try {
    for (const dtype of ["f16", "f32"] as const) {
      const d = 33, n = 301; // odd sizes: f16 rows are not whole u32 words
      const x = taggedRows(0, n, d);
      const sub = `${dir}/${dtype}`;
      const w = await ActivationWriter.create(sub, {
        dIn: d,
        dtype,
        shardTokens: 100,
        provenance: {},
      });
      await w.append(x);
      await w.close();
      const reader = await ActivationReader.open(sub);
      for await (const b of reader.batches({ batchSize: 77, order: "shuffle", seed: 2 })) {
        const buf = await toGpu(gpu, b);
        const got = await readF32(gpu, buf, b.rows * d);
        buf.destroy();
        const want = b.x instanceof Uint16Array ? Float32Array.from(b.x, f16BitsToF32) : b.x;
        assertClose(got, want, { atol: 0, rtol: 0, label: `${dtype} batch` });
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("f16 shards hold exactly lib/util/f16.ts's rounding, including ties, subnormals, -0 and the largest finite", async () => {
  const dir = await tempDir();
  try {
    const special = [
      0,
      -0,
      1,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      2 ** -24,
      2 ** -25,
      3 * 2 ** -26,
      6e-8,
      65504,
      65519,
      -65519,
      1e-10,
    ];
    const x = new Float32Array([
      ...special,
      ...randn(8192 - special.length, 3).map((v) => v * 1e-4),
    ]);
    const w = await ActivationWriter.create(dir, {
      dIn: 64,
      dtype: "f16",
      shardTokens: 50,
      provenance: {},
    });
    await w.append(x);
    await w.close();
    const reader = await ActivationReader.open(dir);
    const got = new Uint16Array(x.length);
    let at = 0;
    for await (const b of reader.batches({ batchSize: 30 })) {
      got.set(b.x as Uint16Array, at);
      at += b.x.length;
    }
    const want = Uint16Array.from(x, (v) => f32ToF16Bits(v));
    const firstBad = got.findIndex((v, i) => v !== want[i]);
    assert.equal(firstBad, -1, `value ${x[firstBad]}: bits ${got[firstBad]} != ${want[firstBad]}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a new epoch's first shard is read during the last one (a one-shard dataset once); each row once per epoch, memory bounded", async () => {
  const dir = await tempDir();
  try {
    const d = 16;
    for (const [name, rows, shardTokens] of [["one", 300, 512], ["five", 300, 64]] as const) {
      const w = await ActivationWriter.create(`${dir}/${name}`, {
        dIn: d,
        dtype: "f32",
        shardTokens,
        provenance: {},
        tokens: true,
      });
      await w.append(taggedRows(0, rows, d), tagTokens(0, rows));
      await w.close();
      const reader = await ActivationReader.open(`${dir}/${name}`);
      const shards = reader.manifest.shards.length;
      const loads: number[] = [];
      const load = reader.loadShard.bind(reader);
      reader.loadShard = (i, withTokens, into) => {
        loads.push(i);
        return load(i, withTokens, into);
      };
      for (const order of ["sequential", "shuffle"] as const) {
        loads.length = 0;
        const stream = reader.batches({ batchSize: 50, order, seed: 4, epochs: 3 });
        const seen: number[][] = [[], [], []];
        let loadsAtEpochEnd = -1;
        for await (const b of stream) {
          seen[b.epoch].push(...b.tokens!.tokenIds);
          // The epoch's last batch is out: the next epoch's first shard is read already.
          if (b.epoch === 0 && seen[0].length === rows) loadsAtEpochEnd = loads.length;
        }
        for (const s of seen) {
          assert.deepEqual([...s].sort((a, b) => a - b), [...Array(rows).keys()]);
        }
        if (shards === 1) {
          assert.equal(loads.length, 1, `${order}: a one-shard dataset is read once`);
        } else {
          assert.equal(loadsAtEpochEnd, shards + 1, `${order}: next epoch's first shard early`);
          assert.equal(loads.length, 3 * shards, `${order}: each shard once per epoch`);
        }
        const shardBytes = Math.max(...reader.manifest.shards.map((_, i) => reader.shardBytes(i)));
        const windowBytes = order === "shuffle" ? shardTokens * (d * 4 + 12) : 0;
        assert.ok(stream.maxHeldBytes() <= 2 * shardBytes + windowBytes, `${order} held`);
        assert.equal(stream.heldBytes(), 0);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
