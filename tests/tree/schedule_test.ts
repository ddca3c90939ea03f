import assert from "node:assert/strict";
import {
  FIRST_REALLOCATION_STEP,
  MAX_REALLOCATION_INTERVAL,
  reallocationSteps,
  scaledScheduleDefaults,
  scheduledEvent,
} from "../../lib/tree/schedule.ts";

Deno.test("paper run (100k steps): 3000, ×2 intervals capped at 10,000, root reset at 50,000", () => {
  const s = reallocationSteps(100_000);
  assert.equal(s.firstStep, FIRST_REALLOCATION_STEP);
  assert.equal(s.maxInterval, MAX_REALLOCATION_INTERVAL);
  assert.deepEqual(s.reallocations, [3000, 9000, 19000, 29000, 39000, 49000]);
  assert.equal(s.rootResetStep, 50_000);
});

Deno.test("defaults scale with the run length, with a 10-step floor", () => {
  assert.deepEqual(reallocationSteps(10_000).reallocations, [300, 900, 1900, 2900, 3900, 4900]);
  assert.equal(reallocationSteps(10_000).rootResetStep, 5000);
  const short = reallocationSteps(100);
  assert.deepEqual([short.firstStep, short.maxInterval, short.rootResetStep], [10, 10, 50]);
  assert.deepEqual(short.reallocations, [10, 20, 30, 40]);
  assert.deepEqual(scaledScheduleDefaults(200_000), {
    firstStep: 6000,
    growth: 2,
    maxInterval: 20_000,
    rootResetStep: 100_000,
  });
  // A run shorter than the first step only gets the root reset.
  assert.deepEqual(reallocationSteps(12).reallocations, []);
  assert.equal(reallocationSteps(12).rootResetStep, 6);
});

Deno.test("explicit options override the scaled defaults; null disables the reset", () => {
  const s = reallocationSteps(30, { firstStep: 3, growth: 2, maxInterval: 5, rootResetStep: 20 });
  assert.deepEqual(s.reallocations, [3, 8, 13, 18]);
  // No reallocation at or after the reset step.
  const t = reallocationSteps(30, { firstStep: 5, growth: 1, maxInterval: 5, rootResetStep: 15 });
  assert.deepEqual(t.reallocations, [5, 10]);
  const u = reallocationSteps(30, { firstStep: 5, growth: 1, rootResetStep: null });
  assert.deepEqual(u.reallocations, [5, 10, 15, 20, 25, 30]);
  assert.equal(u.rootResetStep, null);
  const off = reallocationSteps(100_000, { enabled: false });
  assert.deepEqual([off.reallocations, off.rootResetStep], [[], null]);
});

Deno.test("scheduledEvent finds reallocations and the reset", () => {
  const s = reallocationSteps(100_000);
  assert.equal(scheduledEvent(s, 3000), "reallocate");
  assert.equal(scheduledEvent(s, 49_000), "reallocate");
  assert.equal(scheduledEvent(s, 50_000), "root-reset");
  assert.equal(scheduledEvent(s, 2999), null);
  assert.equal(scheduledEvent(s, 59_000), null);
});

Deno.test("bad schedule settings are named", () => {
  assert.throws(
    () => reallocationSteps(100, { firstStep: 0 }),
    /firstStep = 0 must be an integer ≥ 1/,
  );
  assert.throws(() => reallocationSteps(100, { growth: 0.5 }), /growth = 0.5 must be a number ≥ 1/);
  assert.throws(() => reallocationSteps(100, { rootResetStep: 2.5 }), /rootResetStep = 2.5/);
  assert.throws(() => reallocationSteps(-1), /total steps -1/);
});
