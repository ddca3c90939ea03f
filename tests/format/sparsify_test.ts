/** Tests of the sparsify import (lib/format/sparsify.ts) and the export CLI (cli/export.ts). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertClose, randn } from "../_util.ts";
import { writeSafetensors } from "../../lib/format/safetensors.ts";
import { readSparsify } from "../../lib/format/sparsify.ts";
import { checkFormat, EXPORT_FORMATS, importCheckpoint } from "../../lib/format/convert.ts";
import { ForeignEngine } from "../../lib/format/foreign_engine.ts";
import { foreignToState } from "../../lib/format/convert.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { loadSae, saveCheckpoint } from "../../lib/train/checkpoint.ts";
import { freshProgress } from "../../lib/train/trainer.ts";
import { parseCommand, UsageError } from "../../cli/args.ts";
import { command, parseExportArgs, spec } from "../../cli/export.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "arbor_sparsify_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const d = 7, n = 14, k = 3;

async function sparsifyFolder(dir: string, cfg: Record<string, unknown>, bias = randn(n, 3)) {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfg));
  await writeSafetensors(join(dir, "sae.safetensors"), {
    "encoder.weight": { shape: [n, d], data: randn(n * d, 1) },
    "encoder.bias": { shape: [n], data: bias },
    W_dec: { shape: [n, d], data: randn(n * d, 2) },
    b_dec: { shape: [d], data: randn(d, 4) },
  });
}

const CFG = {
  activation: "topk",
  expansion_factor: 2,
  normalize_decoder: true,
  num_latents: 0,
  k,
  multi_topk: false,
  skip_connection: false,
  transcode: false,
  d_in: d,
};

Deno.test("sparsify import: encode/reconstruct follow sparsify's formula (bias, relu, top-k, raw x)", async () => {
  await withDir(async (dir) => {
    await sparsifyFolder(dir, CFG);
    const sae = await readSparsify(dir);
    assert.equal(sae.config.arch, "topk");
    assert.equal(sae.config.k, k);
    assert.equal(sae.decW.length, n * d);
    const B = 6;
    const x = randn(B * d, 9);
    const { encW, bEnc, decW, bDec } = sae;
    const want = new Float32Array(B * d);
    const wantIdx: number[][] = [];
    for (let b = 0; b < B; b++) {
      const pre = Array.from({ length: n }, (_, i) => {
        let s = bEnc[i];
        for (let j = 0; j < d; j++) s += encW[i * d + j] * (x[b * d + j] - bDec[j]);
        return Math.max(s, 0);
      });
      const top = pre.map((v, i) => [v, i]).sort((p, q) => q[0] - p[0] || p[1] - q[1]).slice(0, k);
      wantIdx.push(top.filter(([v]) => v > 0).map(([, i]) => i));
      for (let j = 0; j < d; j++) {
        let s = bDec[j];
        for (const [v, i] of top) s += v * decW[i * d + j];
        want[b * d + j] = s;
      }
    }
    const eng = new ForeignEngine(sae);
    assertClose(await eng.reconstruct(x, B), want, { atol: 1e-4, rtol: 1e-4 });
    const codes = await eng.encode(x, B);
    for (let b = 0; b < B; b++) {
      const got = Array.from(codes.idx.subarray(b * k, (b + 1) * k)).filter((_, s) =>
        codes.val[b * k + s] > 0
      );
      assert.deepEqual(got, wantIdx[b]);
    }
    await assert.rejects(eng.step(x, B), /inference-only/);
    assert.throws(() => foreignToState(sae), /normalisation is "none".*encoder bias/);
  });
});

Deno.test("sparsify import errors name the file and the field", async () => {
  await withDir(async (dir) => {
    const cfgPath = join(dir, "cfg.json");
    const { d_in: _, ...noDin } = CFG;
    await sparsifyFolder(dir, noDin);
    await assert.rejects(
      readSparsify(dir),
      (e: Error) => e.message === `${cfgPath}: required field "d_in" is missing (the input width)`,
    );
    const { k: _k, ...noK } = CFG;
    await sparsifyFolder(dir, noK);
    await assert.rejects(
      readSparsify(dir),
      new RegExp(`${cfgPath}: required field "k" is missing`),
    );
    await sparsifyFolder(dir, { ...CFG, activation: "groupmax" });
    await assert.rejects(readSparsify(dir), /field "activation" = "groupmax" is not supported/);
    await sparsifyFolder(dir, { ...CFG, transcode: true });
    await assert.rejects(readSparsify(dir), /field "transcode" = true is not supported/);
    await sparsifyFolder(dir, { ...CFG, num_latents: 15 });
    await assert.rejects(
      readSparsify(dir),
      /sae\.safetensors: tensor "encoder\.weight" has shape \[14,7\], expected \[15,7\]/,
    );
  });
});

Deno.test("export CLI: parse errors are usage errors naming the flag", () => {
  const parse = (argv: string[]) => parseExportArgs(parseCommand(spec, argv));
  assert.deepEqual(parse(["runs/a", "--format", "saelens", "--out", "o"]), {
    mode: "export",
    dir: "runs/a",
    format: "saelens",
    out: "o",
  });
  assert.deepEqual(parse(["--from", "sparsify", "src", "-o", "o"]), {
    mode: "import",
    src: "src",
    format: "sparsify",
    out: "o",
  });
  assert.throws(() => parse(["a", "--format", "onnx", "--out", "o"]), (e: Error) => {
    assert.ok(e instanceof UsageError);
    assert.equal(e.message, 'export: unknown --format "onnx"; use one of saelens');
    return true;
  });
  assert.throws(
    () => parse(["a", "--from", "hf", "--out", "o"]),
    /unknown --from format "hf"; use one of saelens, sparsify/,
  );
  assert.throws(() => parse(["a", "--format", "saelens"]), /--out is required/);
  assert.throws(() => parse(["a", "--out", "o"]), /--format is required/);
  assert.throws(
    () => parse(["a", "--format", "saelens", "--from", "saelens", "--out", "o"]),
    /either --format .* or --from/,
  );
  assert.throws(
    () => checkFormat("npz", EXPORT_FORMATS, "export --format"),
    /unknown format "npz"/,
  );
});

Deno.test("export CLI: export then --from import round trip through the command", async () => {
  await withDir(async (root) => {
    const config = makeConfig({ arch: "topk", dIn: d, layers: [n], k, seed: 5 });
    const eng = new ReferenceEngine(config);
    await eng.step(randn(8 * d, 1), 8);
    const state = await eng.readState();
    await saveCheckpoint(join(root, "ck"), { config, state, progress: freshProgress(8, 8) });
    const run = (argv: string[]) => command.run(parseCommand(spec, argv));
    const log = console.log;
    console.log = () => {};
    try {
      assert.equal(
        await run([join(root, "ck"), "--format", "saelens", "--out", join(root, "s")]),
        0,
      );
      assert.equal(await run(["--from", "saelens", join(root, "s"), "--out", join(root, "b")]), 0);
    } finally {
      console.log = log;
    }
    const back = await loadSae(join(root, "b"));
    assert.deepEqual(back.state.encW, state.encW);
    assert.deepEqual(back.state.decW, state.decW);
    assert.deepEqual(back.state.bDec, state.bDec);
    await sparsifyFolder(join(root, "sp"), CFG);
    await assert.rejects(
      importCheckpoint("sparsify", join(root, "sp"), join(root, "sp_native")),
      /cannot become an Arbor checkpoint.*ForeignEngine/,
    );
  });
});
