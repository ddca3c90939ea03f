/**
 * Dynamic allocation during training (paper §4, App. C, App. G): the trainer's `afterStep`
 * callback for a Tree SAE. Every step it credits the step's loss to the parents that fired
 * (capacity.ts); at the scheduled steps (schedule.ts) it runs Algorithm 2 (reallocation.ts) on the
 * engine's state, or the root reset, after which allocation is frozen. Each event is logged to
 * the console and returned as records for metrics.jsonl:
 *
 *   {event: "reallocation" | "root-reset", step, layers: [{layer, children, dead, moved,
 *    deadFractionBefore}]}
 *   {event: "reallocation-followup", step, eventStep, layers: [{layer, deadFractionBefore,
 *    deadFractionAfter}]}
 *
 * Moving a dead child does not revive it at once: it is still dead until it fires under its new
 * parent. So "dead fraction after" is measured by a follow-up record halfway to the next event
 * (or to the end of the run), from the engine's own per-layer dead fractions.
 */
import { ArborError } from "../errors.ts";
import type { SaeConfig } from "../sae/config.ts";
import type { SaeEngine, StepStats } from "../sae/engine.ts";
import { CapacityAccumulator, type CapacityRule, PARENT_ELIGIBILITY_TOKENS } from "./capacity.ts";
import {
  reallocate,
  type ReallocationPool,
  type ReallocationResult,
  resetDeadToRoot,
} from "./reallocation.ts";
import {
  type ReallocationSchedule,
  reallocationSteps,
  scheduledEvent,
  type ScheduleOptions,
} from "./schedule.ts";
import { makeTree } from "./structure.ts";

/** Key of the allocator's JSON state in the trainer state's `hooks` (checkpoint.ts). */
export const TREE_HOOK_NAME = "tree_allocation";

/** Settings of dynamic allocation for one run. */
export interface TreeAllocatorOptions {
  /** Steps of the whole run (the schedule's defaults scale with it). */
  totalSteps: number;
  /** Schedule overrides (first step, growth, cap, root reset, enabled). */
  schedule?: ScheduleOptions;
  /** Capacity rule (default "split", see capacity.ts). */
  capacityRule?: CapacityRule;
  /** Parent eligibility window in tokens (default 50,000, App. G). */
  eligibilityTokens?: number;
  /** Which dead children Algorithm 2 re-places (default "surplus", reallocation.ts). */
  pool?: ReallocationPool;
  /** Tokens per batch; required by the "per-instance" capacity rule only. */
  batchTokens?: number;
  /** Where log lines go (default console.log; null: silent). */
  log?: ((line: string) => void) | null;
}

/** One layer's line of an allocation record. */
export interface LayerRecord {
  layer: number;
  /** s_l. */
  children?: number;
  /** Dead children at the event. */
  dead?: number;
  /** Children moved by the event. */
  moved?: number;
  /** Fraction of the layer's features dead at the event. */
  deadFractionBefore: number;
  /** Fraction dead at the follow-up step (follow-up records only). */
  deadFractionAfter?: number;
}

/** A metrics.jsonl record of dynamic allocation. */
export interface AllocationRecord {
  event: "reallocation" | "root-reset" | "reallocation-followup";
  /** Step the record was made at. */
  step: number;
  /** Follow-ups: the step of the event they follow. */
  eventStep?: number;
  layers: LayerRecord[];
}

/** Minimal state the allocator reads and writes (a subset of SaeState). */
export interface TreeStateView {
  parents: Int32Array[];
  tokensSinceFired: ArrayLike<number>;
}

/** Serializable allocator state for the trainer's resume file (plain JSON). */
export interface TreeAllocatorState {
  capacity: Record<string, number[]>;
  capacitySteps: number[];
  pending: { eventStep: number; atStep: number; before: number[] } | null;
}

/** Capacity accumulation + scheduled reallocation for a Tree SAE run. */
export class TreeAllocator {
  /** The model configuration (arch "tree"). */
  readonly config: SaeConfig;
  /** Resolved schedule. */
  readonly schedule: ReallocationSchedule;
  /** Running capacities. */
  readonly capacity: CapacityAccumulator;
  readonly #eligibilityTokens: number;
  readonly #pool: ReallocationPool;
  readonly #batchTokens: number | undefined;
  readonly #log: ((line: string) => void) | null;
  readonly #totalSteps: number;
  #pending: TreeAllocatorState["pending"] = null;

  /** An allocator for `config` (must be a tree) and a run of `opts.totalSteps` steps. */
  constructor(config: SaeConfig, opts: TreeAllocatorOptions) {
    if (config.arch !== "tree") {
      throw new ArborError(`dynamic allocation needs arch "tree", got "${config.arch}"`);
    }
    this.config = config;
    this.schedule = reallocationSteps(opts.totalSteps, opts.schedule);
    this.capacity = new CapacityAccumulator(config.layers, opts.capacityRule ?? "split");
    if (this.capacity.rule === "per-instance" && !(opts.batchTokens! > 0)) {
      throw new ArborError(`the per-instance capacity rule needs batchTokens (tokens per batch)`);
    }
    this.#eligibilityTokens = opts.eligibilityTokens ?? PARENT_ELIGIBILITY_TOKENS;
    this.#pool = opts.pool ?? "surplus";
    this.#batchTokens = opts.batchTokens;
    this.#log = opts.log === undefined ? console.log : opts.log;
    this.#totalSteps = opts.totalSteps;
  }

  /** True once the root reset has happened (allocation frozen) at or before `step`. */
  frozenAt(step: number): boolean {
    return this.schedule.rootResetStep !== null && step >= this.schedule.rootResetStep;
  }

  /**
   * Account for a finished step: accumulate capacity (until the freeze) and report which event,
   * if any, is due now. Also returns a due follow-up record (needs only the stats).
   */
  observe(
    stats: StepStats,
  ): { event: "reallocate" | "root-reset" | null; followUp: AllocationRecord | null } {
    const event = scheduledEvent(this.schedule, stats.step);
    // The reset step's loss no longer matters: allocation freezes there.
    if (!this.frozenAt(stats.step)) {
      this.capacity.accumulate(stats.loss, stats.fireCounts, this.#batchTokens);
    }
    let followUp: AllocationRecord | null = null;
    const p = this.#pending;
    if (p !== null && (stats.step >= p.atStep || event !== null)) {
      followUp = {
        event: "reallocation-followup",
        step: stats.step,
        eventStep: p.eventStep,
        layers: p.before.map((before, i) => ({
          layer: i + 1,
          deadFractionBefore: before,
          deadFractionAfter: stats.deadFraction[i + 1],
        })),
      };
      this.#pending = null;
      this.#logFollowUp(followUp);
    }
    return { event, followUp };
  }

  /**
   * Run `event` on a state: returns the new parents (input untouched), the per-layer result and
   * the metrics record. Resets capacities after a reallocation.
   */
  apply(
    event: "reallocate" | "root-reset",
    state: TreeStateView,
    step: number,
  ): { result: ReallocationResult; record: AllocationRecord } {
    const c = this.config;
    const tree = makeTree(c.layers, state.parents, { kPerLayer: c.kPerLayer });
    const result = event === "root-reset"
      ? resetDeadToRoot(tree, state.tokensSinceFired, c.deadTokens)
      : reallocate(tree, {
        capacity: this.capacity.capacity,
        tokensSinceFired: state.tokensSinceFired,
        deadTokens: c.deadTokens,
        eligibilityTokens: this.#eligibilityTokens,
        pool: this.#pool,
      });
    if (event === "reallocate") this.capacity.reset();
    const record: AllocationRecord = {
      event: event === "reallocate" ? "reallocation" : "root-reset",
      step,
      layers: result.layers.map((r) => ({
        layer: r.layer,
        children: r.children,
        dead: r.dead,
        moved: r.moved,
        deadFractionBefore: r.dead / r.children,
      })),
    };
    this.#pending = {
      eventStep: step,
      atStep: this.#followUpStep(step),
      before: record.layers.map((l) => l.deadFractionBefore),
    };
    this.#logEvent(record);
    return { result, record };
  }

  /**
   * The trainer's afterStep: accumulate, and at scheduled steps read the engine state, move the
   * dead children, and write the new parents back. Returns the records for metrics.jsonl.
   */
  async afterStep(stats: StepStats, engine: SaeEngine): Promise<AllocationRecord[]> {
    const { event, followUp } = this.observe(stats);
    const records = followUp ? [followUp] : [];
    if (event === null) return records;
    const state = await engine.readState();
    const { result, record } = this.apply(event, state, stats.step);
    if (record.layers.some((l) => (l.moved ?? 0) > 0)) {
      state.parents = result.parents;
      await engine.writeState(state);
    }
    records.push(record);
    return records;
  }

  /** Capacities and the pending follow-up, for the trainer's resume state (plain JSON). */
  toState(): TreeAllocatorState {
    const capacity: Record<string, number[]> = {};
    for (const [k, v] of Object.entries(this.capacity.toState())) capacity[k] = Array.from(v);
    return { capacity, capacitySteps: [...this.capacity.steps], pending: this.#pending };
  }

  /** Restore `toState()` output (from `source`, named in errors) when resuming. */
  loadState(s: TreeAllocatorState, source = "trainer state"): void {
    this.capacity.loadState(s.capacity, source);
    s.capacitySteps?.forEach((v, l) => (this.capacity.steps[l] = v));
    this.#pending = s.pending ?? null;
  }

  // Halfway to the next event (or to the end of the run), at least one step later.
  #followUpStep(step: number): number {
    const next = [...this.schedule.reallocations, this.schedule.rootResetStep ?? Infinity]
      .filter((s) => s > step);
    const end = Math.min(next.length ? Math.min(...next) : Infinity, this.#totalSteps);
    return step + Math.max(1, Math.floor((end - step) / 2));
  }

  #logEvent(r: AllocationRecord): void {
    if (!this.#log) return;
    const parts = r.layers.map((l) =>
      `layer ${l.layer}: moved ${l.moved} (dead ${l.dead}/${l.children} = ${
        pct(l.deadFractionBefore)
      })`
    );
    const what = r.event === "root-reset" ? "root reset (allocation now frozen)" : "reallocation";
    this.#log(`step ${r.step}: ${what}; ${parts.join("; ")}`);
  }

  #logFollowUp(r: AllocationRecord): void {
    if (!this.#log) return;
    const parts = r.layers.map((l) =>
      `layer ${l.layer} ${pct(l.deadFractionBefore)} → ${pct(l.deadFractionAfter!)}`
    );
    this.#log(
      `step ${r.step}: dead fraction since the event at step ${r.eventStep}: ${parts.join(", ")}`,
    );
  }
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/** The trainer's afterStep callback, carrying its allocator (null when there is nothing to do). */
export type TreeAfterStep =
  & ((stats: StepStats, engine: SaeEngine) => Promise<AllocationRecord[]>)
  & { allocator: TreeAllocator | null };

/**
 * Build the trainer's `afterStep(stats, engine)` callback for a tree config (see TreeAllocator;
 * save `fn.allocator.toState()` with the trainer state to resume). For other architectures, or
 * a single-layer tree, returns a no-op yielding no records (`allocator` null).
 */
export function treeAfterStep(config: SaeConfig, opts: TreeAllocatorOptions): TreeAfterStep {
  if (config.arch !== "tree" || config.layers.length < 2) {
    return Object.assign(() => Promise.resolve([] as AllocationRecord[]), { allocator: null });
  }
  const allocator = new TreeAllocator(config, opts);
  return Object.assign(
    (stats: StepStats, engine: SaeEngine) => allocator.afterStep(stats, engine),
    { allocator },
  );
}

/** What the trainer passes a hook besides the stats (structurally lib/train/trainer.ts HookContext). */
export interface TreeHookContext {
  /** Append a record to metrics.jsonl. */
  log(record: Record<string, unknown>): Promise<void>;
  /** Print a line to the console. */
  print(line: string): void;
}

/** A trainer hook (structurally lib/train/trainer.ts TrainerHook) running dynamic allocation. */
export interface TreeTrainerHook {
  /** Key of the hook's state in trainer_state.json: TREE_HOOK_NAME. */
  readonly name: string;
  /** The allocator doing the work (schedule, capacities). */
  readonly allocator: TreeAllocator;
  /** Accumulate, run scheduled events, print them and append their records to metrics.jsonl. */
  afterStep(stats: StepStats, engine: SaeEngine, ctx?: TreeHookContext): Promise<void>;
  /** Whether step `step` ends in a scheduled event (the only time the hook uses the engine). */
  usesEngineAfter(step: number): boolean;
  /** JSON state for the checkpoint. */
  saveState(): { json: TreeAllocatorState };
  /** Restore the saved JSON state on resume. */
  loadState(json: unknown): void;
}

/**
 * The Tree SAE's trainer hook: pass it in the trainer's `hooks` for arch "tree" (null for other
 * architectures and single-layer trees, which have nothing to allocate). `opts.totalSteps` is
 * the run's step count (max tokens / batch size, rounded up). Console lines go to `ctx.print`,
 * records to `ctx.log` (metrics.jsonl).
 */
export function treeTrainerHook(
  config: SaeConfig,
  opts: TreeAllocatorOptions,
): TreeTrainerHook | null {
  if (config.arch !== "tree" || config.layers.length < 2) return null;
  const fallback = opts.log === undefined ? console.log : opts.log;
  let print: ((line: string) => void) | null = fallback;
  const allocator = new TreeAllocator(config, { ...opts, log: (line) => print?.(line) });
  return {
    name: TREE_HOOK_NAME,
    allocator,
    async afterStep(stats, engine, ctx) {
      print = ctx ? (line) => ctx.print(line) : fallback;
      const records = await allocator.afterStep(stats, engine);
      for (const r of records) await ctx?.log({ ...r });
    },
    usesEngineAfter(step) {
      return scheduledEvent(allocator.schedule, step) !== null;
    },
    saveState() {
      return { json: allocator.toState() };
    },
    loadState(json) {
      if (json !== undefined && json !== null) {
        allocator.loadState(json as TreeAllocatorState, `trainer state hook "${TREE_HOOK_NAME}"`);
      }
    },
  };
}
