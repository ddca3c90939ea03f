/**
 * Extract throughput (tokens/s), recorded in bench/README.md under "## Extract".
 *
 *   deno run -A bench/extract.ts [--tokens 20000] [--gpt2 DIR]
 *
 * 1. End to end: `extract` of the tiny fixture (fixtures/tiny-gpt2) over the Brown Corpus,
 *    context 128, batch 8, f16 store in a temp folder (tokenization + forward + writing).
 * 2. Forward only, tiny fixture, to its last hook.
 * 3. Forward only at GPT-2 small's shapes (12 layers, d 768, 12 heads) with random weights:
 *    to resid_pre.5 (the paper's hook, the pass stops there) and the full pass with the loss.
 * 4. With --gpt2 DIR (a local GPT-2 small folder: config.json, model.safetensors, tokenizer.json;
 *    get it on a connected machine with `arbor extract --model gpt2 ...` once, or download those
 *    files from https://huggingface.co/openai-community/gpt2), end-to-end extract at resid_pre.5.
 */
import { helpFromHeader } from "./_help.ts";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { getGpu } from "../lib/gpu/device.ts";
import { extract } from "../lib/lm/extract.ts";
import { loadGpt2Model } from "../lib/lm/load.ts";
import { parseHook } from "../lib/lm/hooks.ts";
import { Gpt2Model } from "../lib/lm/model.ts";
import type { Gpt2Config } from "../lib/lm/config.ts";
import type { Gpt2Weights } from "../lib/lm/weights.ts";

await helpFromHeader(import.meta.url);

const FIXTURE = new URL("../fixtures/tiny-gpt2", import.meta.url).pathname;
const CONTEXT = 128;
const BATCH = 8;

const { values } = parseArgs({
  args: Deno.args,
  options: { tokens: { type: "string", default: "20000" }, gpt2: { type: "string" } },
});
const tokens = Number(values.tokens);
const gpu = await getGpu();

async function timeExtract(label: string, model: string, hook: string) {
  const out = await Deno.makeTempDir();
  try {
    const t0 = performance.now();
    const m = await extract(gpu, {
      model,
      out: join(out, "acts"),
      hook,
      inputs: [],
      context: CONTEXT,
      batch: BATCH,
      maxTokens: tokens,
      overwrite: true,
      download: { offline: true },
    });
    const s = (performance.now() - t0) / 1000;
    console.log(
      `${label}: ${m.total_tokens} tokens in ${s.toFixed(2)} s = ${
        (m.total_tokens / s).toFixed(0)
      } tok/s (end to end)`,
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

/** Median tokens/s of `reps` forward passes of BATCH×CONTEXT random tokens (after a warm-up). */
async function timeForward(
  label: string,
  model: Gpt2Model,
  opts: { hook?: string; loss?: boolean; reps?: number },
) {
  const n = BATCH * CONTEXT;
  const ids = Array.from({ length: n }, (_, i) => (i * 7919) % model.config.vocabSize);
  const capture = opts.hook ? [parseHook(opts.hook)] : [];
  const run = () => model.forward({ tokens: ids, seq: CONTEXT, capture, loss: opts.loss });
  await run();
  const times: number[] = [];
  for (let r = 0; r < (opts.reps ?? 3); r++) {
    const t0 = performance.now();
    await run();
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  const s = times[Math.floor(times.length / 2)];
  console.log(
    `${label}: ${(n / s).toFixed(0)} tok/s (${
      (s * 1000).toFixed(0)
    } ms per ${BATCH}×${CONTEXT} batch)`,
  );
}

function randomWeights(c: Gpt2Config): Gpt2Weights {
  let seed = 1;
  const rand = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      seed = (seed * 1664525 + 1013904223) >>> 0;
      a[i] = (seed / 2 ** 32 - 0.5) * scale;
    }
    return a;
  };
  const d = c.nEmbd, f = c.nInner;
  const ones = () => new Float32Array(d).fill(1);
  return {
    wte: rand(c.vocabSize * d, 0.1),
    wpe: rand(c.nPositions * d, 0.02),
    blocks: Array.from({ length: c.nLayer }, () => ({
      ln1Gamma: ones(),
      ln1Beta: rand(d, 0.01),
      attnW: rand(d * 3 * d, 0.05),
      attnB: rand(3 * d, 0.01),
      attnProjW: rand(d * d, 0.05),
      attnProjB: rand(d, 0.01),
      ln2Gamma: ones(),
      ln2Beta: rand(d, 0.01),
      fcW: rand(d * f, 0.05),
      fcB: rand(f, 0.01),
      projW: rand(f * d, 0.05),
      projB: rand(d, 0.01),
    })),
    lnfGamma: ones(),
    lnfBeta: rand(d, 0.01),
  };
}

await timeExtract("tiny fixture, extract resid_pre.1", FIXTURE, "resid_pre.1");
const tiny = await loadGpt2Model(gpu, FIXTURE);
await timeForward("tiny fixture, forward to resid_post.1", tiny, { hook: "resid_post.1" });
await timeForward("tiny fixture, forward with loss", tiny, { loss: true });
tiny.destroy();

/** GPT-2 small's shapes (HF config of openai-community/gpt2). */
const SMALL: Gpt2Config = {
  nLayer: 12,
  nHead: 12,
  nEmbd: 768,
  nInner: 3072,
  nPositions: 1024,
  vocabSize: 50257,
  layerNormEpsilon: 1e-5,
  eosTokenId: 50256,
};
const small = Gpt2Model.create(gpu, SMALL, randomWeights(SMALL));
await timeForward("GPT-2 small shapes (random weights), forward to resid_pre.5", small, {
  hook: "resid_pre.5",
  reps: 2,
});
await timeForward("GPT-2 small shapes (random weights), full forward with loss", small, {
  loss: true,
  reps: 1,
});
small.destroy();

if (values.gpt2) await timeExtract("GPT-2 small, extract resid_pre.5", values.gpt2, "resid_pre.5");
