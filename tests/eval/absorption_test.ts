import assert from "node:assert/strict";
import { featureSplits, wordAbsorption } from "../../lib/eval/absorption.ts";
import { assertClose } from "../_util.ts";

Deno.test("featureSplits walks k while F1 jumps by more than 0.03", () => {
  const feats = [[4], [4, 9], [4, 9, 1], [4, 9, 1, 7]];
  // 0.50 → 0.60 (+0.10, split) → 0.62 (+0.02, stop).
  assert.deepEqual(featureSplits([0.5, 0.6, 0.62, 0.9], feats), {
    features: [4, 9],
    numSplitFeatures: 1,
  });
  // A single latent suffices.
  assert.deepEqual(featureSplits([0.8, 0.81, 0.82], feats), { features: [4], numSplitFeatures: 0 });
  // Exactly +0.03 is not a jump.
  assert.equal(featureSplits([0.5, 0.53], feats).numSplitFeatures, 0);
});

Deno.test("wordAbsorption: full absorption by one aligned latent while the main latent is silent", () => {
  // Latents: 0 = main (silent), 1 = absorber (cos 0.8, act 2 → proj 1.6), 2 = unrelated.
  const r = wordAbsorption([0, 2, 1], [0.9, 0.8, 0.01], 2, [0]);
  // M = 0, A = 1.6, A/P = 0.8 ≥ 0.4 → fraction 1; top latent 1: cos 0.8, share 0.8 → full.
  assert.deepEqual(r, { absorptionFraction: 1, isFullAbsorption: true });
});

Deno.test("wordAbsorption: partial absorption fraction and no full absorption when the main latent fires", () => {
  // main 0: act 1, cos 0.5 → M = 0.5. Absorbers 1, 2, 3, 4 (cos ≥ 0.1): proj 0.9, 0.6, 0.3, 0.2;
  // top 3 sum A = 1.8. P = 2: A/P = 0.9; unaccounted P − M = 1.5 → a = 1.5; fraction 1.5 / 2.
  const r = wordAbsorption([1, 1.8, 1.2, 1, 2], [0.5, 0.5, 0.5, 0.3, 0.1], 2, [0]);
  assertClose([r.absorptionFraction], [0.75]);
  assert.equal(r.isFullAbsorption, false);
});

Deno.test("wordAbsorption: no absorption when the main latents explain the probe or absorbers are weak", () => {
  assert.equal(wordAbsorption([3, 1], [0.9, 0.9], 2, [0]).absorptionFraction, 0); // M ≥ P
  // Absorber share 0.3 < 0.4; the cos-0.05 latent is not an absorber for the fraction.
  const weak = wordAbsorption([0, 0.6, 10], [0.9, 0.5, 0.05], 1, [0]);
  assert.equal(weak.absorptionFraction, 0);
  // ...but it is the top projection (0.5 ≥ 0.4·P, cos 0.05 ≥ 0.025): full absorption.
  assert.equal(weak.isFullAbsorption, true);
  // Negative probe projection: never full absorption.
  assert.equal(wordAbsorption([0, 2], [0.9, 0.8], -1, [0]).isFullAbsorption, false);
});
