import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "../../cli/main.ts";
import { parseEvaluateArgs, spec } from "../../cli/evaluate.ts";
import { parseCommand } from "../../cli/args.ts";
import { parseResult } from "../../lib/eval/results.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { initState } from "../../lib/sae/engine.ts";
import { saveCheckpoint } from "../../lib/train/checkpoint.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { randn } from "../_util.ts";

async function fixture(root: string) {
  const config = makeConfig({ arch: "tree", dIn: 6, layers: [5, 8], kPerLayer: [2, 2], seed: 1 });
  // A variable, not a literal: fits TrainerProgress with or without maxTokens (changing upstream).
  const progress = {
    tokensSeen: 0,
    batchSize: 64,
    maxTokens: 0,
    cursor: null,
    rngState: 0,
    hooks: {},
    hookTensors: {},
  };
  await saveCheckpoint(join(root, "runs", "tree"), { config, state: initState(config), progress }, {
    data: "../../acts",
  });
  const other = makeConfig({ arch: "topk", dIn: 6, layers: [10], k: 3, seed: 2 });
  await saveCheckpoint(join(root, "runs", "topk"), {
    config: other,
    state: initState(other),
    progress,
  }, {
    data: "../../acts",
  });
  for (const [name, d] of [["acts", 6], ["acts8", 8]] as const) {
    const w = await ActivationWriter.create(join(root, name), {
      dIn: d,
      dtype: "f32",
      provenance: {},
    });
    await w.append(randn(150 * d, d));
    await w.close();
  }
}

/** Run the CLI with console output captured. */
async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await main(args), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

const FAST = [
  "--tokens",
  "120",
  "--probe-tokens",
  "120",
  "--parents",
  "3",
  "--min-child-count",
  "3",
  "--probe-epochs",
  "2",
  "--quiet",
];

Deno.test("evaluate writes one result per SAE of a runs folder and compares them", async () => {
  const root = await Deno.makeTempDir({ prefix: "arbor-eval-cli-" });
  try {
    await fixture(root);
    const r = await run(["evaluate", join(root, "runs"), "--compare", ...FAST]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out.split("\n")[0], /^metric\s+topk\s+tree$/);
    const tree = parseResult(
      await Deno.readTextFile(join(root, "runs", "tree", "eval.json")),
      "eval.json",
    );
    assert.equal(tree.data.tokens_evaluated, 120);
    assert.equal(tree.seed, 0);
    assert.ok(
      tree.metrics.reconstruction && tree.metrics.hierarchy?.tree && tree.metrics.cooccurrence,
    );
    assert.match(tree.not_computed.downstream, /not requested/);
    // Same inputs → byte-identical file.
    const first = await Deno.readTextFile(join(root, "runs", "tree", "eval.json"));
    assert.equal((await run(["evaluate", join(root, "runs", "tree"), ...FAST])).code, 0);
    assert.equal(await Deno.readTextFile(join(root, "runs", "tree", "eval.json")), first);
    // --out with several SAEs is a folder of <name>.json.
    const outDir = join(root, "results");
    assert.equal((await run(["evaluate", join(root, "runs"), "--out", outDir, ...FAST])).code, 0);
    assert.deepEqual(
      [...Deno.readDirSync(outDir)].map((e) => e.name).sort(),
      ["topk.json", "tree.json"],
    );
    assert.equal(await Deno.readTextFile(join(outDir, "tree.json")), first);
    // Compare previously written result files without recomputing.
    const c = await run([
      "evaluate",
      "--compare",
      join(root, "runs", "tree", "eval.json"),
      join(root, "runs", "topk", "eval.json"),
    ]);
    assert.equal(c.code, 0, c.err);
    assert.match(c.out, /^metric\s+tree\s+topk/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("evaluate names a d_in mismatch and a dataset without token files for model metrics", async () => {
  const root = await Deno.makeTempDir({ prefix: "arbor-eval-cli-" });
  try {
    await fixture(root);
    const tree = join(root, "runs", "tree");
    const bad = await run(["evaluate", tree, "--data", join(root, "acts8"), ...FAST]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /activations have d_in = 8 but the SAE .*tree expects d_in = 6/);
    const model = await run(["evaluate", tree, "--metrics", "reconstruction,downstream", ...FAST]);
    assert.equal(model.code, 1);
    assert.match(model.err, /--metrics downstream needs token files \(tokens-NNNNN\.bin\)/);
    const config = makeConfig({ arch: "topk", dIn: 6, layers: [10], k: 3, seed: 2 });
    const progress = {
      tokensSeen: 0,
      batchSize: 64,
      maxTokens: 0,
      cursor: null,
      rngState: 0,
      hooks: {},
      hookTensors: {},
    };
    await saveCheckpoint(join(root, "nodata"), { config, state: initState(config), progress });
    const noData = await run(["evaluate", join(root, "nodata"), ...FAST]);
    assert.equal(noData.code, 1);
    assert.match(
      noData.err,
      /records no dataset \(metadata\.data\); pass the activations with --data DIR/,
    );
    const none = await run(["evaluate", join(root, "acts"), ...FAST]);
    assert.equal(none.code, 1);
    assert.match(none.err, /no config\.json here or in its subfolders/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("evaluate --metrics downstream splices the SAE into the dataset's model", async () => {
  const root = await Deno.makeTempDir({ prefix: "arbor-eval-cli-" });
  try {
    const fixtureModel = new URL("../../fixtures/tiny-gpt2", import.meta.url).pathname;
    const config = makeConfig({ arch: "topk", dIn: 64, layers: [32], k: 4, seed: 3 });
    const progress = {
      tokensSeen: 0,
      batchSize: 64,
      maxTokens: 0,
      cursor: null,
      rngState: 0,
      hooks: {},
      hookTensors: {},
    };
    await saveCheckpoint(join(root, "sae"), { config, state: initState(config), progress });
    const w = await ActivationWriter.create(join(root, "acts"), {
      dIn: 64,
      dtype: "f32",
      tokens: true,
      provenance: { model: fixtureModel, hook: "resid_pre.1", context: 16 },
    });
    const rows = 40; // two whole windows of 16, plus a partial one that is left out
    await w.append(randn(rows * 64, 9), {
      tokenIds: Uint32Array.from({ length: rows }, (_, i) => (i * 7919) % 50257),
      docIds: new Uint32Array(rows),
      positions: Uint32Array.from({ length: rows }, (_, i) => i % 16),
    });
    await w.close();
    const r = await run([
      "evaluate",
      join(root, "sae"),
      "--data",
      join(root, "acts"),
      "--metrics",
      "reconstruction,downstream",
      "--kl",
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.err);
    const res = parseResult(await Deno.readTextFile(join(root, "sae", "eval.json")), "eval.json");
    const ds = res.metrics.downstream!;
    assert.deepEqual(ds.params, { model: fixtureModel, hook: "resid_pre.1", tokens: 32 });
    assert.equal(ds.windows, 2);
    assert.ok(Number.isFinite(ds.ceRecovered) && ds.kl! >= 0 && ds.zeroCe > 0);
    assert.match(res.not_computed.absorption, /not requested/);
    assert.match(r.out, /CE loss recovered/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("parseEvaluateArgs rejects unknown metrics, result files without --compare, no input", () => {
  const parse = (argv: string[]) => parseEvaluateArgs(parseCommand(spec, argv));
  assert.throws(() => parse(["runs/a", "--metrics", "mse"]), /unknown metric "mse" in --metrics/);
  assert.throws(
    () => parse(["a.json"]),
    /a\.json is a result file; result files are only read with --compare/,
  );
  assert.throws(() => parse([]), /give at least one checkpoint folder/);
  assert.deepEqual(parse(["runs/a", "--metrics", "composition"]).metrics, ["composition"]);
});
