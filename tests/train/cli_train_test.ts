/** Tests of `arbor train` (cli/train.ts) on small stored datasets, mostly with the reference engine. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { randn, testGpu } from "../_util.ts";
import { parseCommand, UsageError } from "../../cli/args.ts";
import { parseTrainArgs, runTrain, spec } from "../../cli/train.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { checksumHex } from "../../lib/store/checksum.ts";
import { loadCheckpoint } from "../../lib/train/checkpoint.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "arbor_cli_train_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A stored f32 dataset of `rows` rows of width d in two shards. */
async function dataset(dir: string, d: number, rows: number, seed = 1): Promise<string> {
  const w = await ActivationWriter.create(dir, {
    dIn: d,
    dtype: "f32",
    shardTokens: Math.ceil(rows / 2),
    provenance: { model: "test", hook: "resid_pre.1" },
  });
  await w.append(randn(rows * d, seed).map((v, i) => v + (i % 4)));
  await w.close();
  return dir;
}

/** Run `train` with argv; output lines are collected instead of printed. */
async function train(argv: string[]): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const code = await runTrain(parseTrainArgs(parseCommand(spec, argv).flags), (l) => lines.push(l));
  return { code, lines };
}

const BASE = [
  "--engine",
  "reference",
  "--arch",
  "topk",
  "--n-features",
  "12",
  "--k",
  "3",
  "--batch",
  "16",
  "-q",
];

Deno.test("train → checkpoint; straight run equals run + --resume, bit for bit (store cursor)", async () => {
  await withDir(async (dir) => {
    const data = await dataset(join(dir, "data"), 5, 96); // 6 batches per pass: 10 steps cross a pass
    const a = join(dir, "a"), b = join(dir, "b");
    const args = [...BASE, "--data", data, "--dead-tokens", "32", "--log-every", "2"];
    assert.equal((await train([...args, "--out", a, "--max-tokens", "160"])).code, 0);
    assert.equal((await train([...args, "--out", b, "--max-tokens", "80"])).code, 0);
    assert.equal(
      (await train([
        "--engine",
        "reference",
        "-q",
        "--data",
        data,
        "--resume",
        b,
        "--max-tokens",
        "160",
        "--log-every",
        "2",
      ])).code,
      0,
    );
    const ca = await loadCheckpoint(a), cb = await loadCheckpoint(b);
    assert.equal(ca.state.step, 10);
    assert.deepEqual(cb.state, ca.state);
    assert.deepEqual(cb.progress.cursor, ca.progress.cursor);
    assert.deepEqual(
      await Deno.readFile(join(b, "sae.safetensors")),
      await Deno.readFile(join(a, "sae.safetensors")),
    );
    const cfg = JSON.parse(await Deno.readTextFile(join(a, "config.json")));
    assert.equal(cfg.type, "topk");
    assert.equal(cfg.d_sae, 12);
    assert.equal(cfg.hook_name, "resid_pre.1");
    assert.equal(cfg.metadata.data, data);
    const steps = (await Deno.readTextFile(join(b, "metrics.jsonl"))).trim().split("\n").map((l) =>
      JSON.parse(l).step
    );
    assert.deepEqual(steps, [2, 4, 5, 6, 8, 10]); // the first run also logs its last step (5)
  });
});

Deno.test("k > n: clear error before anything is written", async () => {
  await withDir(async (dir) => {
    const data = await dataset(join(dir, "data"), 5, 40);
    const out = join(dir, "out");
    await assert.rejects(
      () => train([...BASE, "--k", "13", "--data", data, "--out", out]),
      /train flags: k = 13 exceeds the number of features n = 12/,
    );
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound);
  });
});

Deno.test("resuming with data of another d_in: clear error, checkpoint untouched", async () => {
  await withDir(async (dir) => {
    const data = await dataset(join(dir, "data"), 5, 40);
    const other = await dataset(join(dir, "other"), 7, 40);
    const out = join(dir, "out");
    await train([...BASE, "--data", data, "--out", out, "--max-tokens", "32"]);
    const before = await Deno.readFile(join(out, "sae.safetensors"));
    await assert.rejects(
      () => train(["--engine", "reference", "-q", "--data", other, "--resume", out]),
      /the dataset has d_in = 7 but the SAE expects d_in = 5/,
    );
    assert.deepEqual(await Deno.readFile(join(out, "sae.safetensors")), before);
  });
});

Deno.test("NaN in the data: clear error, no checkpoint left", async () => {
  await withDir(async (dir) => {
    const data = await dataset(join(dir, "data"), 5, 40);
    // poison one value of shard 0 and re-seal its checksum so only the trainer can notice
    const manifest = JSON.parse(await Deno.readTextFile(join(data, "manifest.json")));
    const shard = join(data, manifest.shards[0].file);
    const bytes = await Deno.readFile(shard);
    new Float32Array(bytes.buffer)[7] = NaN;
    await Deno.writeFile(shard, bytes);
    manifest.shards[0].checksum = checksumHex(bytes);
    await Deno.writeTextFile(join(data, "manifest.json"), JSON.stringify(manifest));
    const out = join(dir, "out");
    await assert.rejects(
      () => train([...BASE, "--data", data, "--out", out]),
      /non-finite value NaN in the training data/,
    );
    const names = [...Deno.readDirSync(out)].map((e) => e.name);
    assert.ok(
      !names.some((n) => n.includes("safetensors") || n.includes("trainer_state")),
      `${names}`,
    );
  });
});

Deno.test("unwritable --out and an occupied --out give clear errors", async () => {
  await withDir(async (dir) => {
    const data = await dataset(join(dir, "data"), 5, 40);
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "x");
    await assert.rejects(
      () => train([...BASE, "--data", data, "--out", join(file, "out")]),
      /--out .*file\/out: cannot write there .*choose a writable folder/,
    );
    const out = join(dir, "out");
    await train([...BASE, "--data", data, "--out", out, "--max-tokens", "16"]);
    await assert.rejects(
      () => train([...BASE, "--data", data, "--out", out]),
      /already holds a checkpoint; continue it with --resume/,
    );
    assert.equal(
      (await train([...BASE, "--data", data, "--out", out, "--max-tokens", "16", "--overwrite"]))
        .code,
      0,
    );
  });
});

Deno.test("flag errors name the flag", () => {
  const plan = (argv: string[]) => parseTrainArgs(parseCommand(spec, argv).flags);
  assert.throws(() => plan(["--data", "d"]), /--out is required with --data/);
  assert.throws(
    () => plan(["--data", "d", "--out", "o", "--steps-ahead", "1.5"]),
    /--steps-ahead expects an integer, got "1.5"/,
  );
  assert.throws(
    () => plan(["--data", "d", "--out", "o", "--steps-ahead=-1"]),
    /--steps-ahead must be an integer ≥ 0, got -1/,
  );
  assert.equal(plan(["--steps-ahead", "0"]).stepsAhead, 0);
  assert.throws(
    () => plan(["--data", "d", "--out", "o", "--arch", "tree"]),
    /--arch tree needs --layers and --k-per-layer/,
  );
  assert.throws(
    () => plan(["--data", "d", "--out", "o", "--arch", "topk"]),
    /--arch topk needs --n-features/,
  );
  assert.throws(
    () => plan(["--data", "d", "--out", "o", "--arch", "nope"]),
    /--arch must be one of topk, batchtopk/,
  );
  assert.throws(
    () =>
      plan([
        "--data",
        "d",
        "--out",
        "o",
        "--arch",
        "matryoshka",
        "--layers",
        "4,8",
        "--n-features",
        "13",
      ]),
    /--layers \[4,8\] sum to 12 but --n-features is 13/,
  );
  assert.throws(
    () =>
      plan([
        "--data",
        "d",
        "--out",
        "o",
        "--arch",
        "tree",
        "--layers",
        "4,8",
        "--k-per-layer",
        "2,9",
      ]),
    /kPerLayer\[1\] = 9 exceeds the 8 features of layer 1/,
  );
  assert.throws(() => plan(["--resume", "r", "--k", "3"]), UsageError);
  assert.throws(() => plan(["--engine", "cuda"]), /--engine must be gpu or reference/);
  assert.throws(
    () => plan(["--data", "d", "--out", "o", "--preset", "tree-4layer-l0-32", "--k", "3"]),
    /--k conflicts with --preset/,
  );
  const preset = plan(["--data", "d", "--out", "o", "--preset", "tree-4layer-l0-32"]);
  assert.deepEqual(preset.config?.layers, [1536, 3072, 9216, 10752]);
  assert.deepEqual(preset.config?.kPerLayer, [21, 5, 4, 2]);
  const demo = plan(["--no-compare"]);
  assert.equal(demo.out, "runs/demo");
  assert.equal(demo.config?.arch, "tree");
  assert.deepEqual(demo.config?.kPerLayer, [2, 2]);
  const full = plan([]);
  assert.equal(full.config, undefined);
  assert.deepEqual(full.compare?.layers, [6, 24]);
  assert.equal(full.compare?.initTree, "balanced");
  assert.equal(plan(["--init-tree", "random"]).compare?.initTree, "random");
  assert.throws(() => plan(["--arch", "topk"]), /--arch does not apply to --compare/);
  assert.equal(demo.config?.initTree, "balanced");
  assert.equal(plan(["--no-compare", "--init-tree", "random"]).config?.initTree, "random");
  assert.equal(preset.config?.initTree, "balanced");
  assert.throws(
    () => plan(["--no-compare", "--init-tree", "even"]),
    /--init-tree must be balanced or random, got "even"/,
  );
});

Deno.test("GPU engine: on a software adapter train announces the slow first step (kernel compiles)", async () => {
  const gpu = await testGpu();
  await withDir(async (dir) => {
    const data = await dataset(join(dir, "data"), 8, 64);
    const argv = BASE.map((a) => (a === "reference" ? "gpu" : a)).filter((a) => a !== "-q");
    const { code, lines } = await train([
      ...argv,
      "--data",
      data,
      "--out",
      join(dir, "out"),
      "--max-tokens",
      "32",
    ]);
    assert.equal(code, 0, lines.join("\n"));
    const notice = lines.some((l) => l.startsWith("the first step compiles the GPU kernels"));
    assert.equal(notice, gpu.isFallback, lines.join("\n"));
  });
});

Deno.test("GPU engine: train on an f16 store equals train on its values stored as f32, bit for bit", async () => {
  await testGpu();
  await withDir(async (dir) => {
    // The f16 batches reach the engine as f16 (read ahead in a worker) and are widened on the GPU;
    // the f32 store holds the same values already widened.
    const d = 8, rows = 96;
    const values = randn(rows * d, 4).map((v, i) => v + (i % 4));
    const stores: Record<string, string> = {};
    for (const dtype of ["f16", "f32"] as const) {
      const w = await ActivationWriter.create(join(dir, dtype), {
        dIn: d,
        dtype,
        shardTokens: rows / 2,
        provenance: { model: "test" },
      });
      await w.append(dtype === "f16" ? values : new Float32Array(new Float16Array(values)));
      await w.close();
      stores[dtype] = join(dir, dtype);
    }
    const argv = BASE.map((a) => (a === "reference" ? "gpu" : a));
    for (const dtype of ["f16", "f32"]) {
      const { code, lines } = await train([
        ...argv,
        "--data",
        stores[dtype],
        "--out",
        join(dir, `out_${dtype}`),
        "--max-tokens",
        "160",
        "--dead-tokens",
        "32",
      ]);
      assert.equal(code, 0, lines.join("\n"));
    }
    const [a, b] = [
      await loadCheckpoint(join(dir, "out_f16")),
      await loadCheckpoint(join(dir, "out_f32")),
    ];
    assert.equal(a.state.step, 10);
    assert.deepEqual(a.state.encW, b.state.encW);
    assert.deepEqual(a.state.decW, b.state.decW);
    assert.deepEqual(a.state.bDec, b.state.bDec);
  });
});

Deno.test("SIGINT: the CLI writes a checkpoint, says how to resume, exits 130", async () => {
  await withDir(async (dir) => {
    const data = await dataset(join(dir, "data"), 5, 96);
    const out = join(dir, "out");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "cli/main.ts",
        "train",
        ...BASE.filter((a) => a !== "-q"),
        "--data",
        data,
        "--out",
        out,
        "--max-tokens",
        "100000000",
        "--log-every",
        "1",
      ],
      cwd: new URL("../../", import.meta.url),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const metrics = join(out, "metrics.jsonl");
    for (let i = 0; i < 600; i++) { // up to 60 s for the child to start and log 3 steps
      const text = await Deno.readTextFile(metrics).catch(() => "");
      if (text.split("\n").length > 3) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill("SIGINT");
    const { code, stdout } = await child.output();
    const text = new TextDecoder().decode(stdout);
    assert.equal(code, 130, text);
    assert.match(text, /interrupted at step \d+; checkpoint saved in .*; continue with --resume/);
    const ck = await loadCheckpoint(out);
    assert.ok(ck.state.step >= 3);
    assert.equal(ck.progress.tokensSeen, ck.state.step * 16);
  });
});
