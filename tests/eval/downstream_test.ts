import assert from "node:assert/strict";
import { downstreamMetrics, klSum } from "../../lib/eval/downstream.ts";
import { loadGpt2Model } from "../../lib/lm/load.ts";
import { parseHook } from "../../lib/lm/hooks.ts";
import { assertClose, rng, testGpu } from "../_util.ts";

const FIXTURE = new URL("../../fixtures/tiny-gpt2", import.meta.url).pathname;

function tokens(count: number, seed: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: count }, () => Math.floor(r() * 50257));
}

Deno.test("klSum is zero for equal logits and matches a hand-computed case", () => {
  const a = new Float32Array([0, Math.log(3)]); // p = (1/4, 3/4)
  const lseA = new Float32Array([Math.log(4)]);
  const b = new Float32Array([0, 0]); // q = (1/2, 1/2)
  const lseB = new Float32Array([Math.log(2)]);
  const want = 0.25 * Math.log(0.25 / 0.5) + 0.75 * Math.log(0.75 / 0.5);
  assertClose([klSum(a, lseA, b, lseB, 1, 2)], [want]);
  assertClose([klSum(a, lseA, a, lseA, 1, 2)], [0]);
});

Deno.test("tiny model: a perfect reconstruction gives the clean CE, CE recovered = 1, KL = 0", async () => {
  const gpu = await testGpu();
  const model = await loadGpt2Model(gpu, FIXTURE);
  try {
    const hook = parseHook("resid_pre.1");
    const input = { model, hook, tokens: tokens(3 * 16, 1), seq: 16, windowsPerPass: 2, kl: true };
    const perfect = await downstreamMetrics({ ...input, reconstruct: (x) => Promise.resolve(x) });
    assert.equal(perfect.windows, 3);
    assert.equal(perfect.positions, 3 * 15);
    assertClose([perfect.saeCe], [perfect.cleanCe], { atol: 1e-6, rtol: 0, label: "CE" });
    assert.ok(perfect.zeroCe - perfect.cleanCe > 1e-3, "zero ablation hurts");
    assertClose([perfect.ceRecovered, perfect.kl!], [1, 0], { atol: 1e-5, label: "recovered, KL" });
    // Zero "reconstruction" recovers nothing; a half-scaled one lies in between.
    const zero = await downstreamMetrics({
      ...input,
      reconstruct: (x) => Promise.resolve(new Float32Array(x.length)),
    });
    assertClose([zero.ceRecovered], [0], { atol: 1e-5, label: "zero recovered" });
    assert.ok(zero.kl! > 0);
    const half = await downstreamMetrics({
      ...input,
      reconstruct: (x) => Promise.resolve(x.map((v) => 0.5 * v)),
    });
    assert.ok(half.saeCe > perfect.cleanCe && half.kl! > 0);
  } finally {
    model.destroy();
  }
});
