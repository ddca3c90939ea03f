/**
 * `evaluate` and `inspect` on SAE folders in other layouts (lib/format/open_sae.ts): a
 * SAELens export gives the native checkpoint's metrics and views, a hand-built sparsify
 * folder evaluates by sparsify's formula, and a folder that is neither is a clear error.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "../../cli/main.ts";
import { exportCheckpoint } from "../../lib/format/convert.ts";
import { detectSaeFormat, openSae } from "../../lib/format/open_sae.ts";
import { writeSafetensors } from "../../lib/format/safetensors.ts";
import { parseResult } from "../../lib/eval/results.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { initState } from "../../lib/sae/engine.ts";
import { saveCheckpoint } from "../../lib/train/checkpoint.ts";
import { freshProgress } from "../../lib/train/trainer.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { DataError } from "../../lib/errors.ts";
import { assertClose, randn } from "../_util.ts";

const D = 6;
const ROWS = 150;

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "arbor_open_sae_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A dataset `acts`, a native Tree SAE `native` trained on nothing (random init), its SAELens export. */
async function fixture(root: string) {
  const w = await ActivationWriter.create(join(root, "acts"), {
    dIn: D,
    dtype: "f32",
    provenance: {},
  });
  await w.append(randn(ROWS * D, 11));
  await w.close();
  const config = makeConfig({ arch: "tree", dIn: D, layers: [4, 8], kPerLayer: [1, 2], seed: 5 });
  const state = initState(config);
  state.bDec = randn(D, 12).map((v) => 0.1 * v);
  state.step = 1;
  await saveCheckpoint(join(root, "native"), {
    config,
    state,
    progress: freshProgress(64, 0),
  }, { data: join(root, "acts") });
  await exportCheckpoint(join(root, "native"), "saelens", join(root, "saelens"));
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

const EVAL = ["--metrics", "reconstruction", "--tokens", String(ROWS), "--kernels", "reference"];

async function evaluateTo(dir: string, out: string, extra: string[] = []) {
  const r = await run(["evaluate", dir, "--out", out, ...EVAL, ...extra]);
  assert.equal(r.code, 0, r.err);
  return parseResult(await Deno.readTextFile(out), out).metrics.reconstruction!;
}

Deno.test("evaluate: a SAELens export gives the native checkpoint's reconstruction metrics", async () => {
  await withDir(async (root) => {
    await fixture(root);
    assert.equal(await detectSaeFormat(join(root, "saelens")), "saelens");
    assert.equal(await detectSaeFormat(join(root, "native")), "native");
    const native = await evaluateTo(join(root, "native"), join(root, "native.json"));
    // The export records the dataset in cfg.json (metadata.data), so no --data is needed.
    const exported = await evaluateTo(join(root, "saelens"), join(root, "saelens.json"));
    assert.equal(exported.tokens, ROWS);
    assert.ok(native.l0 > 0 && native.varianceExplained < 1);
    // Same ops on the same weights: L0 and dead/dense counts are exact, float sums agree.
    assert.equal(exported.l0, native.l0);
    assert.deepEqual(exported.l0PerLayer, native.l0PerLayer);
    assert.deepEqual(exported.densities, native.densities);
    assertClose(
      Float32Array.of(exported.varianceExplained, exported.mse, exported.cosine),
      Float32Array.of(native.varianceExplained, native.mse, native.cosine),
      { atol: 1e-6, rtol: 1e-6, label: "FVU/MSE/cosine" },
    );
    // An explicit --format gives the same.
    const again = await evaluateTo(join(root, "saelens"), join(root, "again.json"), [
      "--format",
      "saelens",
    ]);
    assert.equal(again.mse, exported.mse);
  });
});

Deno.test("evaluate: a hand-built sparsify folder evaluates by sparsify's formula (b_enc, raw x)", async () => {
  await withDir(async (root) => {
    await fixture(root);
    const n = 10, k = 2;
    const dir = join(root, "sp");
    await Deno.mkdir(dir);
    await Deno.writeTextFile(
      join(dir, "cfg.json"),
      JSON.stringify({ activation: "topk", num_latents: n, k, d_in: D, expansion_factor: 1 }),
    );
    const encW = randn(n * D, 21), bEnc = randn(n, 22), decW = randn(n * D, 23);
    const bDec = randn(D, 24);
    await writeSafetensors(join(dir, "sae.safetensors"), {
      "encoder.weight": { shape: [n, D], data: encW },
      "encoder.bias": { shape: [n], data: bEnc },
      W_dec: { shape: [n, D], data: decW },
      b_dec: { shape: [D], data: bDec },
    });
    assert.equal(await detectSaeFormat(dir), "sparsify");
    // sparsify's cfg.json records no dataset: without --data the error says so.
    const noData = await run(["evaluate", dir, "--out", join(root, "x.json"), ...EVAL]);
    assert.notEqual(noData.code, 0);
    assert.match(noData.err, /cfg\.json: records no dataset \(metadata\.data\); pass .* --data/);
    const got = await evaluateTo(dir, join(root, "sp.json"), ["--data", join(root, "acts")]);
    // Independent loop: pre = relu(W·(x − b_dec) + b), top k, x̂ = Σ v·W_dec + b_dec.
    const x = randn(ROWS * D, 11);
    let sse = 0, active = 0;
    for (let b = 0; b < ROWS; b++) {
      const pre = Array.from({ length: n }, (_, i) => {
        let s = bEnc[i];
        for (let j = 0; j < D; j++) s += encW[i * D + j] * (x[b * D + j] - bDec[j]);
        return Math.max(s, 0);
      });
      const top = pre.map((v, i) => [v, i]).sort((p, q) => q[0] - p[0] || p[1] - q[1])
        .slice(0, k);
      active += top.filter(([v]) => v > 0).length;
      for (let j = 0; j < D; j++) {
        let s = bDec[j];
        for (const [v, i] of top) s += v * decW[i * D + j];
        sse += (s - x[b * D + j]) ** 2;
      }
    }
    assertClose(Float32Array.of(got.mse), Float32Array.of(sse / (ROWS * D)), {
      atol: 1e-6,
      rtol: 1e-5,
      label: "mse",
    });
    assert.equal(got.l0, active / ROWS);
  });
});

Deno.test("inspect --tree and --feature on a SAELens export show what the native checkpoint shows", async () => {
  await withDir(async (root) => {
    await fixture(root);
    const views = [["--tree"], ["--feature", "5"]];
    for (const view of views) {
      const args = [...view, "--engine", "reference", "--tokens", String(ROWS), "--quiet"];
      const a = await run(["inspect", join(root, "native"), ...args]);
      const b = await run(["inspect", join(root, "saelens"), ...args]);
      assert.equal(a.code, 0, a.err);
      assert.equal(b.code, 0, b.err);
      assert.ok(a.out.length > 50, a.out);
      assert.equal(
        b.out.replaceAll(join(root, "saelens"), "DIR"),
        a.out.replaceAll(join(root, "native"), "DIR"),
      );
    }
    const tree = await run(["inspect", join(root, "saelens"), "--tree", "--quiet"]);
    // Every feature of both layers appears in the tree view.
    assert.match(tree.out, /\b11\b/);
  });
});

Deno.test("open: a folder that is neither layout names the files looked for; --format mismatch names the missing file", async () => {
  await withDir(async (root) => {
    await fixture(root);
    const empty = join(root, "empty");
    await Deno.mkdir(empty);
    await Deno.writeTextFile(join(empty, "cfg.json"), "{}");
    await assert.rejects(
      () => openSae(empty),
      (e: Error) => {
        assert.ok(e instanceof DataError);
        assert.match(e.message, /not an SAE folder; looked for config\.json \+ sae\.safetensors/);
        assert.match(e.message, /cfg\.json \+ sae_weights\.safetensors \(saelens\)/);
        assert.match(e.message, /cfg\.json \+ sae\.safetensors \(sparsify\)/);
        return true;
      },
    );
    const ev = await run(["evaluate", empty, ...EVAL]);
    assert.equal(ev.code, 1, ev.err);
    assert.match(
      ev.err,
      /no config\.json here or in its subfolders, nor another SAE layout \(looked for config\.json \+ sae\.safetensors \(Arbor checkpoint\), cfg\.json \+ sae_weights\.safetensors \(saelens\)/,
    );
    const ins = await run(["inspect", empty, "--tree"]);
    assert.notEqual(ins.code, 0);
    assert.match(ins.err, /not an SAE folder; looked for/);
    await assert.rejects(
      () => openSae(join(root, "saelens"), "sparsify"),
      /--format sparsify expects cfg\.json \+ sae\.safetensors, but sae\.safetensors is missing \(the folder looks like saelens: drop --format\)/,
    );
    await assert.rejects(
      () => openSae(join(root, "saelens"), "onnx"),
      /--format: unknown format "onnx"/,
    );
  });
});
