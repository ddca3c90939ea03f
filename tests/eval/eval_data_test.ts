import assert from "node:assert/strict";
import { readEvalRows } from "../../lib/eval/eval_data.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { assertClose, randn } from "../_util.ts";

async function dataset(dtype: "f32" | "f16", rows: number, d: number) {
  const dir = await Deno.makeTempDir({ prefix: "arbor-eval-data-" });
  const w = await ActivationWriter.create(dir, {
    dIn: d,
    dtype,
    shardTokens: 7,
    provenance: { model: "test" },
  });
  const x = randn(rows * d, rows);
  await w.append(x);
  await w.close();
  return { dir, x };
}

Deno.test("readEvalRows reads the first rows across shards and names a d_in mismatch", async () => {
  const { dir, x } = await dataset("f32", 20, 5);
  try {
    const r = await readEvalRows(dir, 12, 5, "runs/a");
    assert.equal(r.rows, 12);
    assertClose(r.x, x.subarray(0, 60), { atol: 0, rtol: 0 });
    assert.equal((await readEvalRows(dir, 1000, 5, "runs/a")).rows, 20);
    assert.equal(r.tokenIds, undefined);
    await assert.rejects(
      () => readEvalRows(dir, 10, 8, "runs/a"),
      /activations have d_in = 5 but the SAE runs\/a expects d_in = 8; .*--data DIR with d_in 8/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readEvalRows widens f16 datasets", async () => {
  const { dir, x } = await dataset("f16", 9, 3);
  try {
    const r = await readEvalRows(dir, 9, 3, "s");
    assertClose(r.x, x, { atol: 2e-3, rtol: 2e-3 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
