import assert from "node:assert/strict";
import { join } from "node:path";
import {
  alphabeticVocab,
  buildPrompts,
  LETTERS,
  promptPieces,
  readTokenizerVocab,
  splitVocab,
} from "../../lib/eval/first_letter_vocab.ts";
import { firstLetterAbsorption, firstLetterData } from "../../lib/eval/first_letter_model.ts";
import { loadTokenizer } from "../../lib/lm/tokenizer.ts";
import { loadGpt2Model } from "../../lib/lm/load.ts";
import { parseHook } from "../../lib/lm/hooks.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { initState } from "../../lib/sae/engine.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { saveCheckpoint } from "../../lib/train/checkpoint.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { parseResult } from "../../lib/eval/results.ts";
import { main } from "../../cli/main.ts";
import { randn, testGpu } from "../_util.ts";

const FIXTURE = new URL("../../fixtures/tiny-gpt2", import.meta.url).pathname;

Deno.test("alphabeticVocab keeps letter-only GPT-2 tokens (optional leading space) with their first letter", async () => {
  const raw = await readTokenizerVocab(FIXTURE);
  const vocab = alphabeticVocab(raw);
  assert.ok(vocab.length > 30000 && vocab.length < 50257, `${vocab.length} words`);
  const the = vocab.find((w) => w.id === raw["Ġthe"])!;
  assert.deepEqual(the, { id: raw["Ġthe"], text: " the", letter: LETTERS.indexOf("t") });
  const upper = vocab.find((w) => w.id === raw["The"])!;
  assert.equal(upper.letter, LETTERS.indexOf("t"));
  assert.equal(vocab.find((w) => w.id === raw["Ġ2019"]), undefined);
  assert.equal(vocab.find((w) => w.id === raw["Ġ"]), undefined);
  for (const w of vocab) assert.match(w.text, /^ ?[A-Za-z]+$/);
  assert.ok(alphabeticVocab(raw, { minLength: 3 }).every((w) => w.text.trim().length >= 3));
  await assert.rejects(
    () => readTokenizerVocab("/nonexistent-model"),
    /tokenizer\.json: cannot read the tokenizer .* needs the model folder's tokenizer\.json/,
  );
});

Deno.test("buildPrompts assembles the same ids as tokenizing the prompt text, word at wordPos, no contamination", async () => {
  const raw = await readTokenizerVocab(FIXTURE);
  const vocab = alphabeticVocab(raw).slice(0, 400);
  const tok = await loadTokenizer(FIXTURE);
  const pieces = promptPieces(tok.encode, tok.eosTokenId);
  const { train } = splitVocab(vocab, 1);
  const prompts = buildPrompts(train.slice(0, 20), train, pieces, { seed: 4 });
  const len = prompts[0].tokens.length;
  prompts.forEach((p, i) => {
    const word = train[i];
    assert.equal(p.tokens.length, len);
    assert.equal(p.tokens[p.wordPos], word.id);
    assert.equal(p.tokens[0], tok.eosTokenId);
    // Decode-free check: the text of the prompt tokenizes to the same ids.
    const examples: string[] = [];
    for (let q = 1; q < p.wordPos; q += 1 + pieces.suffix.length + 2) {
      const ex = train.find((w) => w.id === p.tokens[q])!;
      assert.notEqual(ex.id, word.id, "query word among its own examples");
      examples.push(`${ex.text} has the first letter: ${LETTERS[ex.letter].toUpperCase()}`);
    }
    assert.equal(examples.length, 10);
    const text = examples.join("\n") + "\n" + word.text + " has the first letter:";
    assert.deepEqual(p.tokens.slice(1), tok.encode(text));
  });
  // Seeded: the same seed gives the same prompts.
  assert.deepEqual(buildPrompts(train.slice(0, 20), train, pieces, { seed: 4 }), prompts);
});

Deno.test("tiny model: first-letter activations and the metric run end to end, deterministically", async () => {
  const gpu = await testGpu();
  const model = await loadGpt2Model(gpu, FIXTURE);
  try {
    const hook = parseHook("resid_pre.1");
    const data = await firstLetterData(model, hook, FIXTURE, { seed: 2, maxWords: 150 });
    assert.equal(data.train.letters.length, 120);
    assert.equal(data.test.letters.length, 30);
    assert.equal(data.train.x.length, 120 * 64);
    assert.equal(data.promptLength, 1 + 10 * 8 + 6);
    assert.ok(data.train.x.every(Number.isFinite));
    const config = makeConfig({ arch: "topk", dIn: 64, layers: [48], k: 4, seed: 5 });
    const engine = new ReferenceEngine(config);
    const state = await engine.readState();
    const sae = {
      d: 64,
      n: 48,
      decW: state.decW,
      encode: (x: Float32Array, B: number) => engine.encode(x, B),
    };
    const options = {
      data: { seed: 2, maxWords: 150 },
      metric: {
        seed: 2,
        probe: { epochs: 5, batchSize: 64, lr: 0.01, lrEnd: 1e-3, weightDecay: 1e-4, seed: 0 },
        sparse: {
          epochs: 5,
          batchSize: 256,
          lr: 0.01,
          lrEnd: 1e-3,
          weightDecay: 1e-6,
          l1: 0.01,
          seed: 0,
        },
      },
    };
    const where = { hook, modelDir: FIXTURE, modelName: "tiny" };
    const a = await firstLetterAbsorption(gpu, model, where, sae, options);
    assert.equal(a.letters.length, 26);
    assert.equal(a.params.trainWords, 120);
    assert.equal(a.params.hook, "resid_pre.1");
    assert.equal(a.params.promptTemplate, "{word} has the first letter:");
    assert.equal(a.params.seed, 2);
    for (const l of a.letters) {
      assert.ok(l.f1ByK.length <= 10);
      assert.ok(l.meanAbsorptionFraction >= 0 && l.meanAbsorptionFraction <= 1);
      assert.ok(l.fullAbsorptionRate >= 0 && l.fullAbsorptionRate <= 1);
      if (l.evaluated) assert.ok(l.f1ByK[0] >= 0.4 && l.splitFeatures.length >= 1);
    }
    assert.equal(a.lettersEvaluated, a.letters.filter((l) => l.evaluated).length);
    const b = await firstLetterAbsorption(gpu, model, where, sae, options);
    assert.deepEqual(b, a);
  } finally {
    model.destroy();
  }
});

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

Deno.test("evaluate --metrics absorption writes the first-letter result with its parameters; no model → clear error", async () => {
  const root = await Deno.makeTempDir({ prefix: "arbor-absorption-cli-" });
  try {
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
    for (
      const [name, provenance] of [
        ["acts", { model: FIXTURE, hook: "resid_pre.1" }],
        ["nomodel", { hook: "resid_pre.1" }],
      ] as const
    ) {
      const w = await ActivationWriter.create(join(root, name), {
        dIn: 64,
        dtype: "f32",
        provenance,
      });
      await w.append(randn(20 * 64, 9));
      await w.close();
    }
    const flags = [
      "--metrics",
      "absorption",
      "--absorption-words",
      "80",
      "--probe-epochs",
      "3",
      "--seed",
      "7",
      "--quiet",
    ];
    const r = await run(["evaluate", join(root, "sae"), "--data", join(root, "acts"), ...flags]);
    assert.equal(r.code, 0, r.err);
    const res = parseResult(await Deno.readTextFile(join(root, "sae", "eval.json")), "eval.json");
    const abs = res.metrics.absorption!;
    assert.equal(abs.letters.length, 26);
    assert.equal(abs.params.model, FIXTURE);
    assert.equal(abs.params.maxWords, 80);
    assert.equal(abs.params.trainWords + abs.params.testWords, 80);
    assert.equal(abs.params.seed, 7);
    assert.equal(abs.params.probe.epochs, 3);
    assert.match(r.out, /absorption fraction \(mean\)/);
    assert.match(res.not_computed.downstream, /not requested/);
    const bad = await run([
      "evaluate",
      join(root, "sae"),
      "--data",
      join(root, "nomodel"),
      ...flags,
    ]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.err,
      /provenance names no model; --metrics absorption needs the language model: pass --model DIR/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
