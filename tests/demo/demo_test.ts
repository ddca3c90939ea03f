/**
 * The demo comparison end to end on a small synthetic hierarchy: three SAEs of equal size and
 * L0, checkpoints and summary.json written, ground-truth columns filled, the same numbers on a
 * second run (seeded), and the table's shape.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type CompareSettings,
  formatTable,
  runComparison,
  SUMMARY_FILE,
} from "../../lib/demo/compare.ts";
import { writeSynthDataset } from "../../lib/synth/dataset.ts";
import { parseTree, treeFromParams } from "../../lib/synth/tree.ts";
import { DEFAULT_SYNTH_PARAMS } from "../../lib/synth/default.ts";

const SETTINGS: CompareSettings = {
  layers: [6, 16],
  kPerLayer: [2, 2],
  lr: 3e-3,
  batch: 512,
  maxTokens: 60_000,
  deadTokens: 2_000,
  auxK: 16,
  auxAlpha: [1 / 32, 1 / 32],
  seed: 0,
  evalTokens: 8_000,
  allocation: {},
};

async function smallDataset(dir: string): Promise<string> {
  const tree = parseTree(
    treeFromParams({
      branching: [4, 3],
      topMass: 1.2,
      childMass: 0.5,
      zipf: 0.5,
      exclusive: true,
      binary: false,
    }),
    "test tree",
  );
  const data = join(dir, "data");
  await writeSynthDataset(data, {
    tree,
    params: { ...DEFAULT_SYNTH_PARAMS, dIn: 16, tokens: 20_000 },
  });
  return data;
}

Deno.test("demo comparison: tree/topk/matryoshka of equal n and L0, scored, seeded", async () => {
  const dir = await Deno.makeTempDir({ prefix: "arbor-demo-" });
  try {
    const data = await smallDataset(dir);
    const run = (out: string) =>
      runComparison({
        data,
        out: join(dir, out),
        settings: SETTINGS,
        engine: "reference",
        say: () => {},
        progressSink: null,
      });
    const a = await run("a");
    assert.deepEqual(a.rows.map((r) => r.arch), ["tree", "topk", "matryoshka"]);
    for (const r of a.rows) {
      assert.equal(r.features, 22, r.arch);
      assert.ok(r.l0 > 3 && r.l0 <= 4 + 1e-9, `${r.arch} L0 ${r.l0}`);
      assert.ok(r.fvu > 0 && r.fvu < 0.6, `${r.arch} FVU ${r.fvu}`);
      for (const v of [r.recovered, r.parentAccuracy, r.absorption, r.dead]) {
        assert.ok(v !== null && v >= 0 && v <= 1, `${r.arch}: ${v}`);
      }
      assert.equal(r.parentSource, r.arch === "tree" ? "tree" : "coverage");
      await Deno.stat(join(r.dir, "sae.safetensors"));
      await Deno.stat(join(r.dir, "metrics.jsonl"));
    }
    const saved = JSON.parse(await Deno.readTextFile(join(dir, "a", SUMMARY_FILE)));
    assert.equal(saved.rows.length, 3);
    const b = await run("b");
    const numbers = (rows: typeof a.rows) =>
      rows.map((r) => [r.fvu, r.l0, r.dead, r.recovered, r.parentAccuracy, r.absorption]);
    assert.deepEqual(numbers(b.rows), numbers(a.rows));
    const table = formatTable(a.rows).split("\n");
    assert.equal(table.length, 5);
    assert.match(
      table[0],
      /\| SAE +\| +n \| +FVU \| +L0 \| dead % \| recovered % \| parent acc\. \| absorption \|/,
    );
    assert.match(table[2], /^\| Tree SAE /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
