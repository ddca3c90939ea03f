import assert from "node:assert/strict";
import { evaluateSae } from "../../lib/eval/evaluate_sae.ts";
import {
  type EvalResult,
  formatCompare,
  makeResult,
  parseResult,
  RESULT_SCHEMA,
  resultJson,
} from "../../lib/eval/results.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { VERSION } from "../../lib/version.ts";
import { randn, testGpu } from "../_util.ts";

function tinyTree() {
  const config = makeConfig({ arch: "tree", dIn: 8, layers: [6, 10], kPerLayer: [3, 3], seed: 4 });
  const engine = new ReferenceEngine(config);
  return { config, engine };
}

const settings = {
  seed: 5,
  batchSize: 64,
  probeTokens: 200,
  hierarchy: {
    nParents: 3,
    minChildCount: 5,
    probe: { epochs: 3, batchSize: 64, lr: 0.01, lrEnd: 0.001, weightDecay: 1e-6, seed: 0 },
  },
};

Deno.test("evaluateSae runs every activation metric on a tiny Tree SAE, deterministically", async () => {
  const gpu = await testGpu();
  const { config, engine } = tinyTree();
  const state = await engine.readState();
  const sae = { config, engine, decW: state.decW, parents: state.parents };
  const data = { x: randn(300 * 8, 1), rows: 300, d: 8 };
  const a = await evaluateSae(gpu, sae, data, settings);
  const b = await evaluateSae(null, sae, data, settings); // TS reference kernels: same numbers
  assert.equal(a.tokens, 300);
  const rec = a.reconstruction!;
  assert.ok(rec.l0 > 0 && rec.l0 <= 6, `l0 ${rec.l0}`);
  assert.equal(rec.l0PerLayer.length, 2);
  assert.ok(rec.l0PerLayer[0] <= 3 + 1e-9 && rec.l0PerLayer[1] <= 3 + 1e-9);
  // The tree gate makes every child fire only with its parent: S_cov = 1 on tree pairs.
  assert.ok(a.coverage!.treeCoverage!.pairs > 0);
  assert.equal(a.coverage!.treeCoverage!.meanCoverage, 1);
  assert.deepEqual(Object.keys(a.coverage!.variants).sort(), [
    "binary",
    "binary_scaled",
    "continuous",
    "continuous_scaled",
  ]);
  assert.ok(a.hierarchy!.tree, "tree procedure evaluated");
  assert.ok(a.cooccurrence!.rate >= 0 && a.cooccurrence!.rate <= 1);
  assert.ok(a.composition!.meanMaxCosine > 0 && a.composition!.meanMaxCosine <= 1 + 1e-6);
  // Discrete outcomes equal between GPU and reference paths; floats to rounding.
  assert.equal(a.hierarchy!.tree!.hierarchicalPairs, b.hierarchy!.tree!.hierarchicalPairs);
  assert.equal(a.hierarchy!.mcs.pairs, b.hierarchy!.mcs.pairs);
  assert.deepEqual(a.reconstruction, b.reconstruction);
  assert.ok(Math.abs(a.composition!.meanMaxCosine - b.composition!.meanMaxCosine) < 1e-5);
  // Same inputs, same path → identical record.
  assert.deepEqual(await evaluateSae(gpu, sae, data, settings), a);
});

Deno.test("evaluateSae computes only the requested metrics; no co-occurrence for a flat SAE", async () => {
  const config = makeConfig({ arch: "topk", dIn: 8, layers: [12], k: 3, seed: 2 });
  const engine = new ReferenceEngine(config);
  const state = await engine.readState();
  const m = await evaluateSae(
    null,
    { config, engine, decW: state.decW, parents: [] },
    { x: randn(100 * 8, 3), rows: 100, d: 8 },
    { ...settings, metrics: ["reconstruction", "cooccurrence", "composition"] },
  );
  assert.ok(m.reconstruction && m.composition);
  assert.equal(m.cooccurrence, undefined);
  assert.equal(m.hierarchy, undefined);
  assert.equal(m.coverage, undefined);
  // Composition alone needs no codes: the engine is never asked to encode.
  let calls = 0;
  const counting = Object.assign(Object.create(engine), {
    encode: (x: Float32Array, B: number) => (calls++, engine.encode(x, B)),
  });
  const c = await evaluateSae(
    null,
    { config, engine: counting, decW: state.decW, parents: [] },
    { x: randn(100 * 8, 3), rows: 100, d: 8 },
    { ...settings, metrics: ["composition"] },
  );
  assert.equal(calls, 0);
  assert.deepEqual(c.composition, m.composition);
});

Deno.test("result files round-trip, compare prints SAEs side by side, bad files are named", async () => {
  const { config, engine } = tinyTree();
  const state = await engine.readState();
  const metrics = await evaluateSae(
    null,
    { config, engine, decW: state.decW, parents: state.parents },
    { x: randn(100 * 8, 2), rows: 100, d: 8 },
    { ...settings, metrics: ["reconstruction", "composition"] },
  );
  const result = (name: string): EvalResult =>
    makeResult({
      name,
      sae: { dir: `runs/${name}`, config, n: 16 },
      data: {
        dir: "data",
        tokens_evaluated: 100,
        total_tokens: 100,
        dtype: "f32",
        d_in: 8,
        has_tokens: false,
        provenance: {},
      },
      seed: 5,
      metrics,
      not_computed: { downstream: "needs a dataset with token files and a model" },
    });
  assert.equal(result("a").arbor_version, VERSION);
  const text = resultJson(result("alpha"));
  assert.deepEqual(parseResult(text, "a.json"), result("alpha"));
  const table = formatCompare([result("alpha"), result("beta")]);
  const header = table.split("\n")[0];
  assert.match(header, /^metric\s+alpha\s+beta$/);
  assert.match(table, /variance explained \(pooled R²\)/);
  assert.match(table, /hierarchy \(tree\)\s+—\s+—/);
  assert.match(table, /not computed: downstream — needs a dataset with token files/);
  assert.throws(() => parseResult("{}", "x.json"), /x\.json: not an Arbor evaluation result/);
  assert.throws(
    () => parseResult(JSON.stringify({ schema: RESULT_SCHEMA, version: 99 }), "y.json"),
    /y\.json: result schema version 99/,
  );
});
