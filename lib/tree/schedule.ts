/**
 * When dynamic allocation runs (paper App. C, ref): the first reallocation at step 3000, then the
 * interval doubles after each one ("increase the interval by two"; the reference multiplies by
 * 2), capped at 10,000 steps; at half of training (step ~50,000 of ~100k) every dead child moves
 * to the root and allocation freezes (no reallocation at or after the reset).
 *
 * The paper's run is ~100k steps (500M tokens at batch 5120 ≈ 97.7k). For a run of S steps the
 * defaults scale by S / 100k (first step and interval cap, with a floor of 10 steps so a short
 * run does not reallocate on capacities from a handful of steps); the reset stays at half the
 * run. Every value can be set explicitly. Steps count completed optimiser steps: step 1 is the
 * state after the first update, and an event at step t runs right after update t.
 */
import { ArborError } from "../errors.ts";

/** Steps of the paper's runs that the defaults below refer to (App. C: 500M tokens / 5120). */
export const PAPER_RUN_STEPS = 100_000;
/** First reallocation step in the paper's run (App. C). */
export const FIRST_REALLOCATION_STEP = 3000;
/** Interval growth after each reallocation (App. C "by two"; ref: ×2). */
export const REALLOCATION_INTERVAL_GROWTH = 2;
/** Cap on the interval between reallocations in the paper's run (App. C). */
export const MAX_REALLOCATION_INTERVAL = 10_000;
/** Fraction of the run at which dead children move to the root and allocation freezes (App. C). */
export const ROOT_RESET_FRACTION = 0.5;
/** Floor of the scaled first step and interval cap (ours: keeps short runs sane). */
export const MIN_SCALED_REALLOCATION_STEPS = 10;

/** Schedule settings; any field left out gets its run-length-scaled default. */
export interface ScheduleOptions {
  /** Step of the first reallocation. */
  firstStep?: number;
  /** Factor applied to the interval after each reallocation (≥ 1). */
  growth?: number;
  /** Largest interval between reallocations, in steps. */
  maxInterval?: number;
  /** Step of the root reset; `null` disables it (allocation then never freezes). */
  rootResetStep?: number | null;
  /** False: no reallocation and no root reset at all. */
  enabled?: boolean;
}

/** A resolved schedule: the settings used and the steps where something happens. */
export interface ReallocationSchedule {
  firstStep: number;
  growth: number;
  maxInterval: number;
  rootResetStep: number | null;
  /** Steps (ascending, ≤ totalSteps, < rootResetStep) at which Algorithm 2 runs. */
  reallocations: number[];
}

/** Defaults for a run of `totalSteps` steps: the paper's values scaled by totalSteps / 100k. */
export function scaledScheduleDefaults(
  totalSteps: number,
): Required<Omit<ScheduleOptions, "enabled">> {
  const f = totalSteps / PAPER_RUN_STEPS;
  const firstStep = Math.max(
    MIN_SCALED_REALLOCATION_STEPS,
    Math.round(FIRST_REALLOCATION_STEP * f),
  );
  return {
    firstStep,
    growth: REALLOCATION_INTERVAL_GROWTH,
    maxInterval: Math.max(
      firstStep,
      MIN_SCALED_REALLOCATION_STEPS,
      Math.round(MAX_REALLOCATION_INTERVAL * f),
    ),
    rootResetStep: Math.max(1, Math.round(totalSteps * ROOT_RESET_FRACTION)),
  };
}

/**
 * The reallocation steps and root reset step for a run of `totalSteps` steps. Interval rule
 * (ref): next = previous + interval, interval ← min(maxInterval, floor(interval · growth)),
 * starting with interval = firstStep.
 */
export function reallocationSteps(
  totalSteps: number,
  opts: ScheduleOptions = {},
): ReallocationSchedule {
  if (!Number.isInteger(totalSteps) || totalSteps < 0) {
    throw new ArborError(`reallocation schedule: total steps ${totalSteps} must be an integer ≥ 0`);
  }
  const d = scaledScheduleDefaults(totalSteps);
  const firstStep = opts.firstStep ?? d.firstStep;
  const growth = opts.growth ?? d.growth;
  // An explicit first step above the scaled cap raises the default cap (never shrink below it).
  const maxInterval = opts.maxInterval ?? Math.max(d.maxInterval, firstStep);
  const rootResetStep = opts.rootResetStep === undefined ? d.rootResetStep : opts.rootResetStep;
  checkInt("firstStep", firstStep, 1);
  checkInt("maxInterval", maxInterval, 1);
  if (!(growth >= 1 && Number.isFinite(growth))) {
    throw new ArborError(`reallocation schedule: growth = ${growth} must be a number ≥ 1`);
  }
  if (rootResetStep !== null) checkInt("rootResetStep", rootResetStep, 1);
  const schedule = { firstStep, growth, maxInterval, rootResetStep, reallocations: [] as number[] };
  if (opts.enabled === false) return { ...schedule, rootResetStep: null };
  const end = rootResetStep === null ? totalSteps + 1 : Math.min(rootResetStep, totalSteps + 1);
  let interval = firstStep;
  for (let step = firstStep; step < end; step += interval) {
    schedule.reallocations.push(step);
    interval = Math.max(1, Math.min(maxInterval, Math.floor(interval * growth)));
  }
  return schedule;
}

/** What happens after update `step`: a reallocation, the root reset, or nothing. */
export function scheduledEvent(
  schedule: ReallocationSchedule,
  step: number,
): "reallocate" | "root-reset" | null {
  if (schedule.rootResetStep !== null && step === schedule.rootResetStep) return "root-reset";
  // Binary search: the list is ascending and may be long when growth = 1.
  const r = schedule.reallocations;
  let lo = 0, hi = r.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (r[mid] < step) lo = mid + 1;
    else hi = mid;
  }
  return lo < r.length && r[lo] === step ? "reallocate" : null;
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) {
    throw new ArborError(`reallocation schedule: ${name} = ${v} must be an integer ≥ ${min}`);
  }
}
