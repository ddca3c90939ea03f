/**
 * Issue 4 acceptance on the WebGPU engine: a 4-layer Tree SAE trained on a synthetic hierarchy
 * with dynamic allocation — the gate holds on whole batches before and after every reallocation
 * and the root reset, each layer fills its k_l slots, and the logged dead fraction falls after
 * the events.
 */
import assert from "node:assert/strict";
import { testGpu } from "../_util.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { GpuEngine } from "../../lib/sae/gpu_engine.ts";
import type { EncodeResult } from "../../lib/sae/engine.ts";
import { type AllocationRecord, treeAfterStep } from "../../lib/tree/trainer_hook.ts";
import { SynthGenerator } from "../../lib/synth/generator.ts";
import { parseTree, treeFromParams } from "../../lib/synth/tree.ts";

const B = 128;
const STEPS = 48;
const UNUSED = 0xffffffff;

/** Check Eq. 6 on codes: every active child of layer l ≥ 1 has the root or an active parent. */
function assertGate(codes: EncodeResult, layers: number[], parents: Int32Array[], label: string) {
  const offsets = layers.map((_, l) => layers.slice(0, l).reduce((a, b) => a + b, 0));
  const layerOf = (f: number) => offsets.findLastIndex((o) => f >= o);
  const rows = codes.idx.length / codes.K;
  let checked = 0;
  for (let r = 0; r < rows; r++) {
    const val = new Map<number, number>();
    for (let s = 0; s < codes.K; s++) {
      const f = codes.idx[r * codes.K + s];
      if (f !== UNUSED) val.set(f, codes.val[r * codes.K + s]);
    }
    for (const [f, v] of val) {
      const l = layerOf(f);
      if (l === 0 || !(v > 0)) continue;
      const p = parents[l][f - offsets[l]];
      const parentFires = p === offsets[l] || (val.get(p) ?? 0) > 1e-3;
      assert.ok(parentFires, `${label}: row ${r} child ${f} active (${v}) without parent ${p}`);
      checked++;
    }
  }
  return checked;
}

Deno.test("4-layer Tree SAE on the GPU: gate holds through reallocations and the root reset; L0 per layer is k_l; dead fraction falls", async () => {
  const gpu = await testGpu();
  const tree = parseTree(treeFromParams({
    branching: [4, 2, 2, 2],
    topMass: 1.2,
    childMass: 0.9,
    zipf: 0.5,
    exclusive: false,
    binary: false,
  }));
  const gen = new SynthGenerator(tree, {
    dIn: 24,
    tokens: B * STEPS,
    noise: 0.02,
    magnitudeStd: 0.2,
    epsilon: 0.2,
    siblingEpsilon: 0.1,
    seed: 11,
  });
  const kPerLayer = [2, 1, 1, 1];
  const config = makeConfig({
    arch: "tree",
    dIn: 24,
    layers: [6, 10, 16, 24],
    kPerLayer,
    auxAlpha: [1 / 32, 0, 0, 0],
    deadTokens: 4 * B,
    lr: 3e-3,
    seed: 5,
  });
  const engine = await GpuEngine.create(config, undefined, { gpu });
  const records: AllocationRecord[] = [];
  const hook = treeAfterStep(config, {
    totalSteps: STEPS,
    schedule: { firstStep: 8, growth: 2, maxInterval: 12, rootResetStep: 36 },
    eligibilityTokens: 4 * B,
    log: () => {},
  });
  const probe = gen.batch(256).x; // a fixed batch for the gate check
  try {
    let gated = 0;
    for (const batch of gen.batches(B)) {
      const stats = await engine.step(batch.x, batch.rows);
      stats.l0PerLayer.forEach((l0, l) => {
        assert.ok(l0 <= kPerLayer[l] + 1e-9, `step ${stats.step}: layer ${l} L0 ${l0} > k`);
      });
      // Layer 0 is ungated: its k_0 slots are active unless a pre-activation is ≤ 0 (ReLU).
      assert.ok(stats.l0PerLayer[0] >= 0.9 * kPerLayer[0], `step ${stats.step}: layer 0 L0`);
      const recs = await hook(stats, engine);
      records.push(...recs);
      const { parents } = await engine.readState();
      const codes = await engine.encode(probe, 256);
      // Every layer selects exactly k_l slots per row (its top-k_l of pre·mask).
      const offsets = [0, 6, 16, 32, 56];
      for (let r = 0; r < 256; r++) {
        const perLayer = [0, 0, 0, 0];
        for (let s = 0; s < codes.K; s++) {
          const f = codes.idx[r * codes.K + s];
          if (f !== UNUSED) perLayer[offsets.findLastIndex((o) => f >= o)]++;
        }
        assert.deepEqual(perLayer, kPerLayer, `step ${stats.step} row ${r}: slots per layer`);
      }
      gated += assertGate(codes, config.layers, parents, `step ${stats.step}`);
    }
    assert.ok(gated > 1000, `the gate was exercised (${gated} active children checked)`);
    const events = records.filter((r) => r.event !== "reallocation-followup");
    const planned = hook.allocator!.schedule.reallocations;
    assert.ok(planned.length >= 2, `reallocations scheduled: ${planned}`);
    assert.deepEqual(events.map((r) => [r.event, r.step]), [
      ...planned.map((step) => ["reallocation", step]),
      ["root-reset", 36],
    ]);
    const moved = events.reduce((a, r) => a + r.layers.reduce((b, l) => b + (l.moved ?? 0), 0), 0);
    assert.ok(moved > 0, "children moved");
    // The follow-up records log the dead fraction after each event: it fell overall.
    const followups = records.filter((r) => r.event === "reallocation-followup");
    assert.ok(followups.length >= 2, "follow-ups logged");
    const sum = (r: AllocationRecord, key: "deadFractionBefore" | "deadFractionAfter") =>
      r.layers.reduce((a, l) => a + (l[key] ?? 0), 0);
    const fell = followups.filter((r) =>
      sum(r, "deadFractionAfter") < sum(r, "deadFractionBefore")
    );
    assert.ok(
      fell.length >= 1,
      `dead fraction fell after an event: ${
        JSON.stringify(
          followups.map((r) => [sum(r, "deadFractionBefore"), sum(r, "deadFractionAfter")]),
        )
      }`,
    );
  } finally {
    engine.destroy();
  }
});
