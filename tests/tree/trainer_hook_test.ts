import assert from "node:assert/strict";
import { makeConfig } from "../../lib/sae/config.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { CapacityAccumulator } from "../../lib/tree/capacity.ts";
import { reallocate, resetDeadToRoot } from "../../lib/tree/reallocation.ts";
import { makeTree } from "../../lib/tree/structure.ts";
import {
  type AllocationRecord,
  TREE_HOOK_NAME,
  treeAfterStep,
  TreeAllocator,
  treeTrainerHook,
} from "../../lib/tree/trainer_hook.ts";
import { randn } from "../_util.ts";

const B = 16;

function treeConfig() {
  // deadTokens = 3 batches: features go dead quickly, so every event has work to do.
  return makeConfig({
    arch: "tree",
    dIn: 8,
    layers: [4, 8, 16],
    kPerLayer: [2, 1, 1],
    deadTokens: 3 * B,
    seed: 3,
  });
}

Deno.test("afterStep with the reference engine: scheduled reallocations write exactly Algorithm 2's parents, then the root reset freezes", async () => {
  const config = treeConfig();
  const engine = new ReferenceEngine(config);
  const lines: string[] = [];
  const opts = {
    totalSteps: 40,
    schedule: { firstStep: 5, growth: 2, maxInterval: 10, rootResetStep: 30 },
    eligibilityTokens: 2 * B,
    log: (l: string) => lines.push(l),
  };
  const hook = treeAfterStep(config, opts);
  assert.ok(hook.allocator);
  assert.deepEqual(hook.allocator.schedule.reallocations, [5, 15, 25]);
  const shadow = new CapacityAccumulator(config.layers);
  const records: AllocationRecord[] = [];
  let moved = 0;
  let frozenParents: Int32Array[] | null = null;
  for (let step = 1; step <= 40; step++) {
    const x = randn(B * config.dIn, 100 + step);
    const stats = await engine.step(x, B);
    assert.equal(stats.step, step);
    const before = await engine.readState();
    const tree = makeTree(config.layers, before.parents);
    let expected: Int32Array[] | null = null;
    if (step < 30) shadow.accumulate(stats.loss, stats.fireCounts);
    if ([5, 15, 25].includes(step)) {
      expected = reallocate(tree, {
        capacity: shadow.capacity,
        tokensSinceFired: before.tokensSinceFired,
        deadTokens: config.deadTokens,
        eligibilityTokens: 2 * B,
      }).parents;
      shadow.reset();
    } else if (step === 30) {
      expected = resetDeadToRoot(tree, before.tokensSinceFired, config.deadTokens).parents;
    }
    const recs = await hook(stats, engine);
    records.push(...recs);
    const after = (await engine.readState()).parents;
    if (expected) {
      assert.deepEqual(after, expected, `step ${step}: engine parents`);
      const rec = recs.find((r) => r.event !== "reallocation-followup")!;
      assert.equal(rec.step, step);
      assert.equal(rec.event, step === 30 ? "root-reset" : "reallocation");
      for (const l of rec.layers) moved += l.moved!;
      // Only dead children moved.
      for (let l = 1; l < 3; l++) {
        const o = tree.offsets[l];
        for (let i = 0; i < config.layers[l]; i++) {
          if (after[l][i] !== before.parents[l][i]) {
            assert.ok(before.tokensSinceFired[o + i] >= config.deadTokens, `alive child moved`);
          }
        }
      }
      if (step === 30) {
        for (let l = 1; l < 3; l++) {
          const o = tree.offsets[l];
          for (let i = 0; i < config.layers[l]; i++) {
            if (before.tokensSinceFired[o + i] >= config.deadTokens) assert.equal(after[l][i], o);
          }
        }
        frozenParents = after;
      }
    } else {
      assert.deepEqual(after, before.parents, `step ${step}: parents must not change`);
    }
  }
  assert.ok(moved > 0, "the run should have moved some dead children");
  // Gating still holds with the moved parents (Eq. 6): an active child's parent is the root or
  // active on the same token.
  const final = await engine.readState();
  const offsets = [0, 4, 12];
  const codes = await engine.encode(randn(64 * config.dIn, 999), 64);
  let gated = 0;
  for (let b = 0; b < 64; b++) {
    const row = new Map<number, number>();
    for (let s = 0; s < codes.K; s++) {
      row.set(codes.idx[b * codes.K + s], codes.val[b * codes.K + s]);
    }
    for (const [f, v] of row) {
      if (f < 4 || !(v > 1e-3)) continue;
      const l = f < 12 ? 1 : 2;
      const p = final.parents[l][f - offsets[l]];
      if (p === offsets[l]) continue;
      gated++;
      assert.ok((row.get(p) ?? 0) > 1e-3, `row ${b}: feature ${f} active without its parent ${p}`);
    }
  }
  assert.ok(gated > 0, "some active child should have a non-root parent");
  assert.deepEqual((await engine.readState()).parents, frozenParents);
  const events = records.filter((r) => r.event !== "reallocation-followup").map((r) => r.step);
  assert.deepEqual(events, [5, 15, 25, 30]);
  // Follow-ups halfway to the next event (and to the end of the run after the reset).
  const followUps = records.filter((r) => r.event === "reallocation-followup");
  assert.deepEqual(followUps.map((r) => [r.eventStep, r.step]), [[5, 10], [15, 20], [25, 27], [
    30,
    35,
  ]]);
  for (const f of followUps) {
    for (const l of f.layers) assert.ok(l.deadFractionAfter! >= 0 && l.deadFractionAfter! <= 1);
  }
  assert.equal(lines.length, 8);
  assert.match(
    lines[0],
    /^step 5: reallocation; layer 1: moved \d+ \(dead \d+\/8 = [\d.]+%\); layer 2: moved/,
  );
  assert.match(lines.at(-2)!, /^step 30: root reset \(allocation now frozen\)/);
  assert.match(
    lines.at(-1)!,
    /^step 35: dead fraction since the event at step 30: layer 1 [\d.]+% → [\d.]+%/,
  );
});

Deno.test("allocator state round-trips for resume; non-tree configs get a no-op hook", () => {
  const config = treeConfig();
  const a = new TreeAllocator(config, { totalSteps: 100, log: null });
  const fire = new Uint32Array(28);
  fire[1] = 2;
  fire[5] = 1;
  a.observe({
    step: 1,
    loss: 2,
    mainLoss: [],
    auxLoss: [],
    fvu: 0,
    l0: 0,
    l0PerLayer: [],
    deadFraction: [0, 0, 0],
    fireCounts: fire,
  });
  const saved = JSON.parse(JSON.stringify(a.toState()));
  const b = new TreeAllocator(config, { totalSteps: 100, log: null });
  b.loadState(saved);
  assert.deepEqual(b.capacity.capacity, a.capacity.capacity);
  assert.deepEqual(b.capacity.steps, [0, 1, 1]);
  assert.deepEqual([...a.capacity.capacity[1]], [0, 1, 0, 0, 1]);
  const topk = makeConfig({ arch: "topk", dIn: 8, layers: [16], k: 2 });
  assert.equal(treeAfterStep(topk, { totalSteps: 10 }).allocator, null);
  assert.throws(() => new TreeAllocator(topk, { totalSteps: 10 }), /needs arch "tree", got "topk"/);
});

Deno.test("treeTrainerHook prints events through ctx, logs records, and resumes from its saved state", async () => {
  const config = treeConfig();
  const opts = {
    totalSteps: 12,
    schedule: { firstStep: 4, growth: 1, maxInterval: 4, rootResetStep: 10 },
  };
  const hook = treeTrainerHook(config, opts)!;
  assert.equal(hook.name, TREE_HOOK_NAME);
  const engine = new ReferenceEngine(config);
  const printed: string[] = [];
  const logged: Record<string, unknown>[] = [];
  const ctx = {
    print: (l: string) => printed.push(l),
    log: (r: Record<string, unknown>) => {
      logged.push(r);
      return Promise.resolve();
    },
  };
  let saved: unknown = null;
  for (let step = 1; step <= 12; step++) {
    const stats = await engine.step(randn(B * config.dIn, step), B);
    await hook.afterStep(stats, engine, ctx);
    if (step === 5) saved = JSON.parse(JSON.stringify(hook.saveState().json));
  }
  assert.deepEqual(
    logged.map((r) => [r.event, r.step]),
    [
      ["reallocation", 4],
      ["reallocation-followup", 6],
      ["reallocation", 8],
      ["reallocation-followup", 9],
      ["root-reset", 10],
      ["reallocation-followup", 11],
    ],
  );
  assert.equal(printed.length, 6);
  assert.match(printed[4], /^step 10: root reset/);
  // Resume at step 5: the restored hook has the same capacities and pending follow-up.
  const resumed = treeTrainerHook(config, { ...opts, log: null })!;
  resumed.loadState(saved);
  assert.deepEqual(resumed.saveState().json, saved);
  assert.equal(
    treeTrainerHook(makeConfig({ arch: "topk", dIn: 8, layers: [16], k: 2 }), opts),
    null,
  );
});
