/** Loading GPT-2 configs and weights: clear errors for incomplete or mismatched files. */
import assert from "node:assert/strict";
import { parseGpt2Config, readGpt2Config } from "../../lib/lm/config.ts";
import { openSafetensors } from "../../lib/lm/tensor_source.ts";
import { loadGpt2Weights, type TensorSource } from "../../lib/lm/weights.ts";

const FIXTURE = new URL("../../fixtures/tiny-gpt2", import.meta.url).pathname;

Deno.test("the fixture config parses into the GPT-2 numbers", async () => {
  const c = await readGpt2Config(FIXTURE);
  assert.deepEqual(c, {
    nLayer: 2,
    nHead: 4,
    nEmbd: 64,
    nInner: 256,
    nPositions: 128,
    vocabSize: 50257,
    layerNormEpsilon: 1e-5,
    eosTokenId: 50256,
  });
});

Deno.test("GPT-2 small's published config parses (n_inner null means 4·d)", () => {
  const c = parseGpt2Config({
    activation_function: "gelu_new",
    model_type: "gpt2",
    n_ctx: 1024,
    n_embd: 768,
    n_head: 12,
    n_layer: 12,
    n_positions: 1024,
    vocab_size: 50257,
    layer_norm_epsilon: 1e-5,
  });
  assert.equal(c.nInner, 3072);
  assert.equal(c.nLayer, 12);
});

Deno.test("bad configs name the field", () => {
  assert.throws(
    () => parseGpt2Config({ model_type: "llama" }, "x/config.json"),
    /x\/config\.json: model_type "llama" is not supported/,
  );
  assert.throws(
    () => parseGpt2Config({ n_embd: 64, n_head: 3, n_layer: 1, n_positions: 8, vocab_size: 10 }),
    /n_embd 64 is not divisible by n_head 3/,
  );
  assert.throws(
    () => parseGpt2Config({ n_embd: 64, n_head: 4, n_positions: 8, vocab_size: 10 }),
    /field "n_layer" must be a positive integer/,
  );
});

Deno.test("a missing weight tensor and a shape mismatch are clear errors", async () => {
  const config = await readGpt2Config(FIXTURE);
  const full = await openSafetensors(`${FIXTURE}/model.safetensors`);
  const without: TensorSource = {
    file: full.file,
    names: () => full.names().filter((n) => n !== "h.1.mlp.c_fc.bias"),
    get: (n) => (n === "h.1.mlp.c_fc.bias" ? undefined : full.get(n)),
  };
  assert.throws(
    () => loadGpt2Weights(without, config),
    /model\.safetensors: missing weight tensor "h\.1\.mlp\.c_fc\.bias"/,
  );
  assert.throws(
    () => loadGpt2Weights(full, { ...config, nInner: 128 }),
    /weight "h\.0\.mlp\.c_fc\.weight" has shape \[64,256\] but config\.json implies \[64,128\]/,
  );
  assert.throws(
    () => loadGpt2Weights(full, { ...config, nLayer: 3 }),
    /missing weight tensor "h\.2\.ln_1\.weight"/,
  );
});

Deno.test("weights load with the GPT2LMHeadModel 'transformer.' prefix too", async () => {
  const config = await readGpt2Config(FIXTURE);
  const full = await openSafetensors(`${FIXTURE}/model.safetensors`);
  const prefixed: TensorSource = {
    file: full.file,
    names: () => full.names().map((n) => "transformer." + n),
    get: (
      n,
    ) => (n.startsWith("transformer.") ? full.get(n.slice("transformer.".length)) : undefined),
  };
  const a = loadGpt2Weights(full, config);
  const b = loadGpt2Weights(prefixed, config);
  assert.deepEqual(b.blocks[1].projB, a.blocks[1].projB);
});
