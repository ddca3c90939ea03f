/**
 * The GPU model against the TypeScript reference forward (lib/lm/reference.ts) at odd sizes the
 * fixture does not have: width 36 (not a multiple of the GEMM's 32-blocks), 3 heads of 12, MLP 100,
 * 3 layers, a 301-token vocabulary split into 128-row chunks, windows of 11 tokens; then width 33
 * (3 heads of 11, MLP 70), which is not a multiple of 4 and takes the GEMM's scalar-load variant.
 */
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import { Gpt2Model } from "../../lib/lm/model.ts";
import type { Gpt2Config } from "../../lib/lm/config.ts";
import type { Gpt2Weights } from "../../lib/lm/weights.ts";
import { parseHook } from "../../lib/lm/hooks.ts";
import { referenceForward } from "../../lib/lm/reference.ts";

const CONFIG: Gpt2Config = {
  nLayer: 3,
  nHead: 3,
  nEmbd: 36,
  nInner: 100,
  nPositions: 20,
  vocabSize: 301,
  layerNormEpsilon: 1e-5,
  eosTokenId: 300,
};

function randomWeights(c: Gpt2Config, seed: number): Gpt2Weights {
  let s = seed;
  const r = (n: number, scale: number, offset = 0) => randn(n, s++).map((v) => offset + v * scale);
  const d = c.nEmbd, f = c.nInner;
  return {
    wte: r(c.vocabSize * d, 0.5),
    wpe: r(c.nPositions * d, 0.2),
    blocks: Array.from({ length: c.nLayer }, () => ({
      ln1Gamma: r(d, 0.1, 1),
      ln1Beta: r(d, 0.1),
      attnW: r(d * 3 * d, 1 / Math.sqrt(d)),
      attnB: r(3 * d, 0.1),
      attnProjW: r(d * d, 1 / Math.sqrt(d)),
      attnProjB: r(d, 0.1),
      ln2Gamma: r(d, 0.1, 1),
      ln2Beta: r(d, 0.1),
      fcW: r(d * f, 1 / Math.sqrt(d)),
      fcB: r(f, 0.1),
      projW: r(f * d, 1 / Math.sqrt(f)),
      projB: r(d, 0.1),
    })),
    lnfGamma: r(d, 0.1, 1),
    lnfBeta: r(d, 0.1),
  };
}

Deno.test("GPU forward equals the TypeScript reference forward at odd sizes (every hook, loss)", async () => {
  for (const config of [CONFIG, { ...CONFIG, nEmbd: 33, nInner: 70 }]) {
    await checkAgainstReference(config);
  }
});

async function checkAgainstReference(CONFIG: Gpt2Config) {
  const gpu = await testGpu();
  const weights = randomWeights(CONFIG, 11);
  const model = Gpt2Model.create(gpu, CONFIG, weights, { vocabChunkRows: 128 });
  const seq = 11;
  const pick = rng(5);
  const windows = [0, 1].map(() =>
    Array.from({ length: seq }, () => Math.floor(pick() * CONFIG.vocabSize))
  );
  const hooks = ["resid_pre", "attn_out", "mlp_out", "resid_post"].flatMap((s) =>
    [0, 1, 2].map((l) => parseHook(`${s}.${l}`))
  );
  const out = await model.forward({ tokens: windows.flat(), seq, capture: hooks, loss: true });
  const d = CONFIG.nEmbd;
  let lossSum = 0;
  windows.forEach((tokens, i) => {
    const ref = referenceForward(weights, CONFIG, tokens);
    for (const [name, want] of ref.hooks) {
      const got = out.activations.get(name)!.subarray(i * seq * d, (i + 1) * seq * d);
      assertClose(got, want, { atol: 1e-4, rtol: 1e-4, label: `d=${d} window ${i} ${name}` });
    }
    lossSum += ref.loss;
  });
  assertClose([out.loss!], [lossSum / 2], { atol: 1e-4, rtol: 1e-5, label: `loss d=${d}` });
  model.destroy();
}
