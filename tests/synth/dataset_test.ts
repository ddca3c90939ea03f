import assert from "node:assert/strict";
import { join } from "node:path";
import { DataError } from "../../lib/errors.ts";
import { readAllF32 } from "../../lib/store/reader.ts";
import { writeSynthDataset } from "../../lib/synth/dataset.ts";
import {
  DEFAULT_SYNTH_PARAMS,
  defaultTree,
  ensureDefaultDataset,
} from "../../lib/synth/default.ts";
import { SynthGenerator, type SynthParams } from "../../lib/synth/generator.ts";
import { parseTree, treeFromParams } from "../../lib/synth/tree.ts";
import { ACTIVITY_FILE, readTruth, readTruthActivity, TRUTH_FILE } from "../../lib/synth/truth.ts";

const PARAMS: SynthParams = {
  dIn: 12,
  tokens: 3000,
  noise: 0.01,
  magnitudeStd: 0.1,
  epsilon: 0.25,
  siblingEpsilon: 0.1,
  seed: 11,
};

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("writeSynthDataset stores the generator's rows, truth.json and the per-token activity", async () => {
  await withTempDir(async (root) => {
    const dir = join(root, "ds");
    const tree = parseTree(
      treeFromParams({
        branching: [3, 2],
        topMass: 1,
        childMass: 0.7,
        zipf: 0.5,
        exclusive: false,
        binary: false,
      }),
    );
    const res = await writeSynthDataset(dir, { tree, params: PARAMS, shardTokens: 1000 });
    assert.equal(res.manifest.total_tokens, 3000);
    assert.equal(res.manifest.shards.length, 3);
    assert.equal(res.manifest.complete, true);
    const rows = await readAllF32(dir);
    const gen = new SynthGenerator(tree, PARAMS);
    const batch = gen.batch(PARAMS.tokens);
    assert.deepEqual(rows.x, batch.x);
    const truth = await readTruth(dir);
    assert.ok(truth);
    assert.equal(truth.features, 9);
    assert.deepEqual(truth.directions, gen.directions);
    assert.deepEqual(Array.from(truth.parents), [-1, 0, 0, -1, 3, 3, -1, 6, 6]);
    assert.deepEqual(Array.from(truth.empiricalRates), Array.from(gen.empiricalRates()));
    assert.equal(truth.json.expected_cosines.child_parent, 0.25);
    assert.deepEqual(await readTruthActivity(dir, truth), batch.active);
    assert.deepEqual(
      await readTruthActivity(dir, truth, 1000, 10),
      batch.active.subarray(1000 * truth.activityWidth, 1010 * truth.activityWidth),
    );
    // An existing dataset is not replaced without overwrite.
    await assert.rejects(
      () => writeSynthDataset(dir, { tree, params: PARAMS }),
      (e: Error) =>
        e instanceof DataError && e.message.includes(dir) && e.message.includes("--overwrite"),
    );
    await writeSynthDataset(dir, { tree, params: { ...PARAMS, tokens: 500 }, overwrite: true });
    assert.equal((await readTruth(dir))!.tokens, 500);
  });
});

Deno.test("readTruth returns null without truth.json and names the file when the activity record is short", async () => {
  await withTempDir(async (dir) => {
    assert.equal(await readTruth(dir), null);
    const tree = parseTree(
      treeFromParams({
        branching: [2, 2],
        topMass: 1,
        childMass: 0.5,
        zipf: 0,
        exclusive: true,
        binary: true,
      }),
    );
    await writeSynthDataset(join(dir, "a"), { tree, params: { ...PARAMS, tokens: 100 } });
    const truth = (await readTruth(join(dir, "a")))!;
    await Deno.truncate(join(dir, "a", ACTIVITY_FILE), 50);
    await assert.rejects(
      () => readTruthActivity(join(dir, "a"), truth),
      (e: Error) =>
        e instanceof DataError && e.message.includes(ACTIVITY_FILE) &&
        e.message.includes("100 × 1"),
    );
    await Deno.writeTextFile(
      join(dir, "a", TRUTH_FILE),
      JSON.stringify({ ...truth.json, version: 99 }),
    );
    await assert.rejects(
      () => readTruth(join(dir, "a")),
      (e: Error) => e.message.includes("version 99"),
    );
  });
});

Deno.test("ensureDefaultDataset generates once, reuses, and regenerates a damaged or outdated cache", async () => {
  await withTempDir(async (cache) => {
    const first = await ensureDefaultDataset(cache, { tokens: 4000 });
    assert.equal(first.generated, true);
    assert.equal(first.truth.features, defaultTree().features.length);
    assert.equal(first.truth.dIn, DEFAULT_SYNTH_PARAMS.dIn);
    assert.ok(first.truth.features >= 20 && first.truth.features <= 60);
    const again = await ensureDefaultDataset(cache, { tokens: 4000 });
    assert.equal(again.generated, false);
    assert.deepEqual(again.truth.directions, first.truth.directions);
    await Deno.truncate(join(first.dir, ACTIVITY_FILE), 10);
    assert.equal((await ensureDefaultDataset(cache, { tokens: 4000 })).generated, true);
    assert.equal((await ensureDefaultDataset(cache, { tokens: 5000 })).generated, true);
    assert.equal((await readAllF32(first.dir)).rows, 5000);
  });
});
