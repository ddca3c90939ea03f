import assert from "node:assert/strict";
import { join } from "node:path";
import { randn } from "../_util.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { ActivationReader, readAllF32, readHeadRows } from "../../lib/store/reader.ts";

Deno.test("readHeadRows returns the first rows across shards with their tokens, capped at the dataset", async () => {
  const dir = await Deno.makeTempDir({ prefix: "arbor_head_rows_" });
  try {
    const rows = 50, d = 6;
    const w = await ActivationWriter.create(join(dir, "ds"), {
      dIn: d,
      dtype: "f32",
      shardTokens: 16,
      tokens: true,
      provenance: { model: "test" },
    });
    const ids = Uint32Array.from({ length: rows }, (_, i) => 1000 + i);
    await w.append(randn(rows * d, 9), {
      tokenIds: ids,
      docIds: ids.map((i) => i % 7),
      positions: ids.map((i) => i % 5),
    });
    await w.close();
    const all = await readAllF32(join(dir, "ds"));
    const reader = await ActivationReader.open(join(dir, "ds"));
    const head = await readHeadRows(reader, 21); // crosses the first shard boundary (16)
    assert.equal(head.rows, 21);
    assert.deepEqual(head.x, all.x.subarray(0, 21 * d));
    assert.deepEqual(head.tokens?.tokenIds, ids.subarray(0, 21));
    assert.deepEqual(head.tokens?.docIds, ids.subarray(0, 21).map((i) => i % 7));
    const capped = await readHeadRows(reader, 999);
    assert.equal(capped.rows, rows);
    assert.deepEqual(capped.x, all.x);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
