/** `extract` end to end on the tiny fixture: a valid store, exact resume after a kill, clear errors. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertClose, testGpu } from "../_util.ts";
import { extract, type ExtractOptions } from "../../lib/lm/extract.ts";
import { readAllF32 } from "../../lib/store/reader.ts";
import { loadGpt2Model } from "../../lib/lm/load.ts";
import { parseHook } from "../../lib/lm/hooks.ts";
import { loadTokenizer } from "../../lib/lm/tokenizer.ts";
import { readCorpus } from "../../lib/lm/corpus.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const FIXTURE = join(ROOT, "fixtures/tiny-gpt2");

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("extract over the Brown Corpus writes a store whose rows are the model's activations", async () => {
  const gpu = await testGpu();
  await withTempDir(async (tmp) => {
    const out = join(tmp, "acts");
    const opts: ExtractOptions = {
      model: FIXTURE,
      out,
      hook: "resid_post.0",
      inputs: [],
      context: 64,
      maxTokens: 700,
      batch: 3,
      shardTokens: 256,
      download: { offline: true },
    };
    const manifest = await extract(gpu, opts);
    assert.equal(manifest.total_tokens, 700);
    assert.deepEqual(manifest.shards.map((s) => s.tokens), [256, 256, 188]);
    assert.equal(manifest.dtype, "f16");
    assert.equal(manifest.provenance.hook, "resid_post.0");
    assert.equal(manifest.provenance.context, 64);
    assert.match(String(manifest.provenance.corpus), /brown/);
    const all = await readAllF32(out);
    assert.equal(all.dIn, 64);
    // The token stream: EOS, then the first Brown document.
    const tok = await loadTokenizer(FIXTURE);
    const first = (await readCorpus([]).next()).value!;
    const stream = [50256, ...tok.encode(first.text)].slice(0, 700);
    assert.deepEqual(Array.from(all.tokens!.tokenIds), stream);
    assert.deepEqual(Array.from(all.tokens!.positions.subarray(60, 70)), [
      60,
      61,
      62,
      63,
      0,
      1,
      2,
      3,
      4,
      5,
    ]);
    assert.ok(all.tokens!.docIds.every((d) => d === 0));
    // Window 2 (rows 128..191) recomputed directly; f16 storage rounds to ~1e-3 relative.
    const model = await loadGpt2Model(gpu, FIXTURE);
    const direct = await model.forward({
      tokens: stream.slice(128, 192),
      capture: [parseHook("resid_post.0")],
    });
    model.destroy();
    assertClose(all.x.subarray(128 * 64, 192 * 64), direct.activations.get("resid_post.0")!, {
      atol: 1e-3,
      rtol: 1e-3,
      label: "window 2",
    });
  });
});

Deno.test("extract of a JSONL corpus (--text-field) to f32 stores the forward pass's values exactly", async () => {
  const gpu = await testGpu();
  await withTempDir(async (tmp) => {
    const corpus = join(tmp, "docs.jsonl");
    const texts = [
      "The cat sat on the mat.",
      "Dogs bark at night, and owls hoot.",
      "A third short document here.",
    ];
    await Deno.writeTextFile(
      corpus,
      texts.map((t) => JSON.stringify({ body: t, id: 1 })).join("\n"),
    );
    const manifest = await extract(gpu, {
      model: FIXTURE,
      out: join(tmp, "acts"),
      hook: "mlp_out.1",
      inputs: [corpus],
      textField: "body",
      context: 8,
      maxTokens: 1000,
      dtype: "f32",
      download: { offline: true },
    });
    const tok = await loadTokenizer(FIXTURE);
    const stream = texts.flatMap((t) => [50256, ...tok.encode(t)]);
    const rows = Math.floor(stream.length / 8) * 8;
    assert.equal(
      manifest.total_tokens,
      rows,
      "the corpus ends before --max-tokens: whole windows only",
    );
    const all = await readAllF32(join(tmp, "acts"));
    assert.deepEqual(Array.from(all.tokens!.tokenIds), stream.slice(0, rows));
    // Each EOS starts the next document: doc id = EOS tokens seen so far − 1.
    let doc = -1;
    const docIds = stream.slice(0, rows).map((t) => (t === 50256 ? ++doc : doc));
    assert.deepEqual(Array.from(all.tokens!.docIds), docIds);
    assert.equal(docIds[rows - 1], 2);
    const model = await loadGpt2Model(gpu, FIXTURE);
    const direct = await model.forward({
      tokens: stream.slice(0, rows),
      seq: 8,
      capture: [parseHook("mlp_out.1")],
    });
    model.destroy();
    assert.deepEqual(all.x, direct.activations.get("mlp_out.1"));
  });
});

async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const m = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(dir)) m.set(e.name, await Deno.readFile(join(dir, e.name)));
  return m;
}

Deno.test("a killed and resumed extract writes byte-identical shards", async () => {
  const gpu = await testGpu();
  await withTempDir(async (tmp) => {
    const args = [
      "--model",
      FIXTURE,
      "--hook",
      "resid_pre.1",
      "--context",
      "32",
      "--batch",
      "1",
      "--shard-tokens",
      "400",
    ];
    const maxTokens = 5000;
    const clean = join(tmp, "clean");
    await extract(gpu, {
      model: FIXTURE,
      out: clean,
      hook: "resid_pre.1",
      inputs: [],
      context: 32,
      batch: 1,
      shardTokens: 400,
      maxTokens,
      download: { offline: true },
    });
    const out = join(tmp, "killed");
    const cli = (extra: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          join(ROOT, "cli/main.ts"),
          "extract",
          ...args,
          "--max-tokens",
          String(maxTokens),
          "--out",
          out,
          "-q",
          ...extra,
        ],
        stdout: "null",
        stderr: "piped",
      });
    const child = cli([]).spawn();
    // Kill once at least two shards are on disk (the run is far from done by then).
    let shards = 0;
    for (let i = 0; i < 1500 && shards < 2; i++) {
      await new Promise((r) => setTimeout(r, 20));
      try {
        shards = JSON.parse(await Deno.readTextFile(join(out, "manifest.json"))).shards.length;
      } catch { /* not written yet, or mid-rename */ }
    }
    child.kill("SIGKILL");
    await child.output();
    const partial = JSON.parse(await Deno.readTextFile(join(out, "manifest.json")));
    assert.equal(
      partial.complete,
      false,
      "the run finished before it could be killed; make it longer",
    );
    assert.ok(partial.total_tokens < maxTokens);
    const resumed = await cli(["--resume"]).output();
    assert.equal(resumed.code, 0, new TextDecoder().decode(resumed.stderr));
    const a = await filesOf(clean);
    const b = await filesOf(out);
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
    for (const [name, bytes] of a) {
      if (name === "manifest.json") continue;
      assert.ok(
        bytes.length > 0 && bytes.every((v, i) => v === b.get(name)![i]),
        `${name} differs after resume`,
      );
    }
    const ma = JSON.parse(new TextDecoder().decode(a.get("manifest.json")));
    const mb = JSON.parse(new TextDecoder().decode(b.get("manifest.json")));
    assert.deepEqual(mb.shards, ma.shards);
    assert.equal(mb.total_tokens, maxTokens);
  });
});

Deno.test("extract errors: hook beyond the depth, empty corpus", async () => {
  const gpu = await testGpu();
  await withTempDir(async (tmp) => {
    const base = {
      model: FIXTURE,
      inputs: [] as string[],
      maxTokens: 100,
      download: { offline: true },
    };
    await assert.rejects(
      extract(gpu, { ...base, out: join(tmp, "a"), hook: "resid_pre.5" }),
      /hook resid_pre\.5 is beyond the model's depth: it has 2 blocks/,
    );
    await Deno.writeTextFile(join(tmp, "empty.txt"), "");
    await assert.rejects(
      extract(gpu, {
        ...base,
        out: join(tmp, "b"),
        hook: "resid_pre.1",
        inputs: [join(tmp, "empty.txt")],
      }),
      /the corpus holds no text/,
    );
    await assert.rejects(
      extract(gpu, { ...base, out: join(tmp, "c"), hook: "resid_pre.1", context: 129 }),
      /--context 129 exceeds the model's 128 positions/,
    );
  });
});

Deno.test("cli extract: --offline with an uncached hub id fails fast naming the local-folder alternative", async () => {
  await withTempDir(async (tmp) => {
    const t0 = performance.now();
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        join(ROOT, "cli/main.ts"),
        "extract",
        "--model",
        "gpt2",
        "--offline",
        "--cache-dir",
        tmp,
        "--out",
        join(tmp, "o"),
        "-q",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 1, err);
    assert.match(
      err,
      /model "gpt2" is not in the cache .* --offline forbids downloading; pass --model DIR with a local folder/,
    );
    assert.ok(performance.now() - t0 < 20_000);
    const usage = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(ROOT, "cli/main.ts"), "extract", "--out", join(tmp, "o"), "-q"],
      stderr: "piped",
    }).output();
    assert.equal(usage.code, 2);
    assert.match(new TextDecoder().decode(usage.stderr), /--model is required/);
  });
});
