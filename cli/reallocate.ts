/**
 * `arbor reallocate DIR`: run the Tree SAE's dynamic allocation (paper Algorithms 1-2, App. G)
 * or the root reset (App. C) now, offline, on a training checkpoint and its trainer state.
 * Uses the capacities the trainer accumulated since the last reallocation (trainer state hook
 * `tree_allocation`) and the exact dead counters (tokens_since_fired). Writes a new checkpoint
 * to --out (the input is only replaced with --in-place); --dry-run only prints.
 */
import { join, resolve } from "node:path";
import {
  type CommandSpec,
  type FlagSpec,
  type ParsedCommand,
  type ParsedFlags,
  UsageError,
} from "./args.ts";
import type { Command } from "./command.ts";
import { DataError } from "../lib/errors.ts";
import type { SaeConfig } from "../lib/sae/config.ts";
import {
  type Checkpoint,
  type CheckpointInfo,
  CONFIG_FILE,
  loadCheckpoint,
  saveCheckpoint,
} from "../lib/train/checkpoint.ts";
import { CapacityAccumulator, PARENT_ELIGIBILITY_TOKENS } from "../lib/tree/capacity.ts";
import {
  reallocate,
  REALLOCATION_POOLS,
  type ReallocationPool,
  type ReallocationResult,
  resetDeadToRoot,
} from "../lib/tree/reallocation.ts";
import { makeTree, type TreeStructure } from "../lib/tree/structure.ts";
import {
  FIRST_REALLOCATION_STEP,
  MAX_REALLOCATION_INTERVAL,
  MIN_SCALED_REALLOCATION_STEPS,
  PAPER_RUN_STEPS,
  REALLOCATION_INTERVAL_GROWTH,
  reallocationSteps,
  type ScheduleOptions,
} from "../lib/tree/schedule.ts";
import {
  TREE_HOOK_NAME,
  type TreeAllocatorOptions,
  type TreeAllocatorState,
} from "../lib/tree/trainer_hook.ts";

/**
 * Dynamic-allocation flags for `train --arch tree` (spread into train's spec). Defaults that
 * depend on the run length are computed by `allocationOptionsFromFlags` and stated here.
 */
export const ALLOCATION_FLAGS: Record<string, FlagSpec> = {
  realloc: {
    type: "boolean",
    default: true,
    help:
      "tree: dynamic allocation of dead children (Alg. 1-2) and the root reset; --no-realloc disables",
  },
  "realloc-first": {
    type: "int",
    help:
      `tree: step of the first reallocation (default: ${FIRST_REALLOCATION_STEP} × steps/${PAPER_RUN_STEPS}, ` +
      `at least ${MIN_SCALED_REALLOCATION_STEPS})`,
  },
  "realloc-growth": {
    type: "number",
    default: REALLOCATION_INTERVAL_GROWTH,
    help: "tree: factor on the interval after each reallocation (App. C)",
  },
  "realloc-max-interval": {
    type: "int",
    help: `tree: largest interval between reallocations (default: ${MAX_REALLOCATION_INTERVAL} × ` +
      `steps/${PAPER_RUN_STEPS}, at least the first step)`,
  },
  "root-reset-step": {
    type: "int",
    help: "tree: step at which every dead child moves to the root and allocation freezes " +
      "(default: half the run; 0 disables)",
  },
  "eligibility-tokens": {
    type: "int",
    default: PARENT_ELIGIBILITY_TOKENS,
    help: "tree: a parent must have fired within this many tokens to receive children (App. G)",
  },
  "realloc-pool": {
    type: "string",
    default: "surplus",
    help:
      "tree: which dead children Alg. 2 re-places: surplus (only parents' excess over k*; ref, " +
      "issue #4) or all-dead (every dead child, first fit into k* minus alive children; the " +
      "paper's App. G wording)",
  },
  "capacity-rule": {
    type: "string",
    default: "split",
    help: "tree: split (each step's loss shared by the parents that fired; ref) or per-instance " +
      "(loss × tokens fired on; the paper's wording)",
  },
};

/**
 * TreeAllocatorOptions from parsed ALLOCATION_FLAGS for a run of `totalSteps` steps of
 * `batchTokens` tokens; throws UsageError naming the bad flag.
 */
export function allocationOptionsFromFlags(
  flags: ParsedFlags,
  totalSteps: number,
  batchTokens: number,
): TreeAllocatorOptions {
  const rule = flags["capacity-rule"] ?? "split";
  if (rule !== "split" && rule !== "per-instance") {
    throw new UsageError(`train: --capacity-rule must be split or per-instance, got "${rule}"`);
  }
  const reset = flags["root-reset-step"] as number | undefined;
  const schedule: ScheduleOptions = {
    enabled: flags.realloc !== false,
    firstStep: flags["realloc-first"] as number | undefined,
    growth: (flags["realloc-growth"] as number | undefined) ?? REALLOCATION_INTERVAL_GROWTH,
    maxInterval: flags["realloc-max-interval"] as number | undefined,
    rootResetStep: reset === 0 ? null : reset,
  };
  const eligibilityTokens = (flags["eligibility-tokens"] as number | undefined) ??
    PARENT_ELIGIBILITY_TOKENS;
  if (!(eligibilityTokens >= 1)) {
    throw new UsageError(`train: --eligibility-tokens must be ≥ 1, got ${eligibilityTokens}`);
  }
  const pool = parsePool(flags["realloc-pool"], "train");
  try {
    reallocationSteps(totalSteps, schedule);
  } catch (e) {
    const flag: Record<string, string> = {
      firstStep: "--realloc-first",
      growth: "--realloc-growth",
      maxInterval: "--realloc-max-interval",
      rootResetStep: "--root-reset-step",
    };
    const m = (e as Error).message;
    const key = Object.keys(flag).find((k) => m.includes(`${k} =`));
    throw new UsageError(`train: ${key ? flag[key] + ": " : ""}${m}`);
  }
  return { totalSteps, schedule, capacityRule: rule, eligibilityTokens, pool, batchTokens };
}

/** --realloc-pool value, checked; throws UsageError naming the flag. */
function parsePool(value: unknown, command: string): ReallocationPool {
  const v = value ?? "surplus";
  if (!REALLOCATION_POOLS.includes(v as ReallocationPool)) {
    throw new UsageError(
      `${command}: --realloc-pool must be ${REALLOCATION_POOLS.join(" or ")}, got "${v}"`,
    );
  }
  return v as ReallocationPool;
}

/** Flags of `reallocate`. */
export const spec: CommandSpec = {
  name: "reallocate",
  summary: "run the Tree SAE's dead-child reallocation (Alg. 1-2) or root reset on a checkpoint",
  usage: "deno run -A cli/main.ts reallocate DIR (--out DIR2 | --in-place | --dry-run) [flags]",
  flags: {
    out: { type: "string", help: "write the new checkpoint to this folder" },
    "in-place": { type: "boolean", help: "replace the input checkpoint instead of writing --out" },
    "dry-run": { type: "boolean", help: "print what would move; write nothing" },
    "to-root": {
      type: "boolean",
      help: "root reset (App. C): move every dead child to the root instead of Algorithms 1-2",
    },
    "dead-tokens": {
      type: "int",
      help: "a feature is dead after this many tokens without firing (default: the checkpoint's)",
    },
    "eligibility-tokens": {
      type: "int",
      default: PARENT_ELIGIBILITY_TOKENS,
      help: "a parent must have fired within this many tokens to receive children (App. G)",
    },
    "realloc-pool": {
      type: "string",
      default: "surplus",
      help: "which dead children move: surplus (only parents' excess over k*) or all-dead (every " +
        "dead child, first fit into k* minus alive children; the paper's App. G wording)",
    },
    "show-moves": {
      type: "int",
      default: 20,
      help: "with --dry-run: list at most this many moves per layer",
    },
  },
  positionals: true,
  examples: [
    "deno run -A cli/main.ts reallocate runs/tree --dry-run",
    "deno run -A cli/main.ts reallocate runs/tree --out runs/tree-realloc",
    "deno run -A cli/main.ts reallocate runs/tree --to-root --in-place",
  ],
};

/** Parsed `reallocate` command line. */
export interface ReallocateArgs {
  /** Input checkpoint folder. */
  dir: string;
  /** Output folder (null with --dry-run; the input folder with --in-place). */
  out: string | null;
  /** Root reset instead of Algorithm 2. */
  toRoot: boolean;
  /** Print only. */
  dryRun: boolean;
  /** Dead threshold override in tokens. */
  deadTokens: number | undefined;
  /** Parent eligibility window in tokens. */
  eligibilityTokens: number;
  /** Which dead children Algorithm 2 re-places. */
  pool: ReallocationPool;
  /** Moves listed per layer in a dry run. */
  showMoves: number;
}

/** Check the flag combination; throws UsageError naming the conflict. */
export function parseReallocateArgs(p: ParsedCommand): ReallocateArgs {
  const f = p.flags;
  if (p.positionals.length !== 1) {
    throw new UsageError(
      `reallocate: give exactly one checkpoint folder, got ${p.positionals.length} (see reallocate --help)`,
    );
  }
  const dir = p.positionals[0];
  const dryRun = f["dry-run"] === true;
  const inPlace = f["in-place"] === true;
  const out = typeof f.out === "string" && f.out !== "" ? f.out : null;
  if (dryRun && (out !== null || inPlace)) {
    throw new UsageError("reallocate: --dry-run writes nothing; drop --out / --in-place");
  }
  if (out !== null && inPlace) {
    throw new UsageError("reallocate: give either --out or --in-place, not both");
  }
  if (!dryRun && out === null && !inPlace) {
    throw new UsageError(
      "reallocate: say where the result goes: --out DIR (new checkpoint), --in-place, or --dry-run",
    );
  }
  if (out !== null && resolve(out) === resolve(dir)) {
    throw new UsageError(
      `reallocate: --out ${out} is the input checkpoint; use --in-place to overwrite it`,
    );
  }
  const deadTokens = f["dead-tokens"] as number | undefined;
  if (deadTokens !== undefined && deadTokens < 1) {
    throw new UsageError(`reallocate: --dead-tokens must be ≥ 1, got ${deadTokens}`);
  }
  const eligibilityTokens = f["eligibility-tokens"] as number;
  if (!(eligibilityTokens >= 1)) {
    throw new UsageError(`reallocate: --eligibility-tokens must be ≥ 1, got ${eligibilityTokens}`);
  }
  return {
    dir,
    out: dryRun ? null : inPlace ? dir : out,
    toRoot: f["to-root"] === true,
    dryRun,
    deadTokens,
    eligibilityTokens,
    pool: parsePool(f["realloc-pool"], "reallocate"),
    showMoves: Math.max(0, f["show-moves"] as number),
  };
}

/** The outcome of planning: the tree before, the result, and notes for the user. */
export interface ReallocationPlan {
  tree: TreeStructure;
  result: ReallocationResult;
  notes: string[];
}

/**
 * Run Algorithm 2 (or the root reset) on a checkpoint's config + state and the trainer's
 * allocator hook state (may be undefined: capacities are then all zero, so Algorithm 1 spreads
 * children evenly over the eligible parents). `source` names the trainer state in errors.
 */
export function planReallocation(
  config: SaeConfig,
  state: { parents: Int32Array[]; tokensSinceFired: ArrayLike<number> },
  hookState: unknown,
  args: Pick<ReallocateArgs, "toRoot" | "deadTokens" | "eligibilityTokens"> & {
    pool?: ReallocationPool;
  },
  source = "trainer state",
): ReallocationPlan {
  if (config.arch !== "tree") {
    throw new DataError(
      `${source}: reallocate works on Tree SAE checkpoints; this one is ${config.arch}`,
    );
  }
  const tree = makeTree(config.layers, state.parents, { kPerLayer: config.kPerLayer });
  const deadTokens = args.deadTokens ?? config.deadTokens;
  const notes: string[] = [];
  if (args.toRoot) {
    return { tree, result: resetDeadToRoot(tree, state.tokensSinceFired, deadTokens), notes };
  }
  const capacity = new CapacityAccumulator(config.layers);
  const hook = hookState as Partial<TreeAllocatorState> | undefined;
  if (hook?.capacity) {
    capacity.loadState(hook.capacity, source);
    if (hook.capacitySteps?.slice(1).every((s) => s === 0)) {
      notes.push("capacities were reset at the last reallocation and have not accumulated since");
    }
  } else {
    notes.push(
      `no capacities in ${source} (hook "${TREE_HOOK_NAME}"): all are 0, so Algorithm 1 spreads ` +
        "the children evenly over the eligible parents",
    );
  }
  const result = reallocate(tree, {
    capacity: capacity.capacity,
    tokensSinceFired: state.tokensSinceFired,
    deadTokens,
    eligibilityTokens: args.eligibilityTokens,
    pool: args.pool,
  });
  return { tree, result, notes };
}

function fmtPayoff(x: number): string {
  return x === Infinity ? "-" : x.toPrecision(4);
}

/** The per-layer summary table of a reallocation or root reset. */
export function summaryTable(plan: ReallocationPlan, toRoot: boolean): string {
  const header = toRoot ? ["layer", "children", "dead", "moved", "root children"] : [
    "layer",
    "children",
    "dead",
    "moved",
    "eligible parents",
    "min C/k before→after (k*)",
    "off k*",
  ];
  const rows = plan.result.layers.map((r) => {
    const base = [String(r.layer), String(r.children), String(r.dead), String(r.moved)];
    const root = plan.tree.offsets[r.layer];
    if (toRoot) {
      const change = r.changes.find((c) => c.parent === root);
      const before = change?.before ??
        plan.result.parents[r.layer].filter((p) => p === root).length;
      const after = change?.after ?? before;
      return [...base, `${before} → ${after}`];
    }
    const pay = r.payoff!;
    const dist = r.distanceToOptimal!;
    return [
      ...base,
      `${r.eligibleParents}/${root + 1}`,
      `${fmtPayoff(pay.before)} → ${fmtPayoff(pay.after)} (${fmtPayoff(pay.optimal)})`,
      `${dist.before} → ${dist.after}`,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** The moves of each layer (at most `limit` per layer), as "feature f: parent a → b" lines. */
export function movesText(plan: ReallocationPlan, limit: number): string {
  const lines: string[] = [];
  for (const r of plan.result.layers) {
    const o = plan.tree.offsets[r.layer];
    const name = (p: number) => (p === o ? "root" : String(p));
    lines.push(`layer ${r.layer}: ${r.moved} dead children would move`);
    const shown = Math.min(limit, r.moved);
    for (let j = 0; j < shown; j++) {
      const f = o + r.moves.child[j];
      lines.push(`  feature ${f}: parent ${name(r.moves.from[j])} → ${name(r.moves.to[j])}`);
    }
    if (r.moved > shown) lines.push(`  ... and ${r.moved - shown} more`);
  }
  return lines.join("\n");
}

/** The checkpoint with the new parents (and, after Algorithm 2, the capacities reset). */
export function applyPlan(ck: Checkpoint, plan: ReallocationPlan, toRoot: boolean): Checkpoint {
  const hooks = { ...ck.progress.hooks };
  const hook = hooks[TREE_HOOK_NAME] as TreeAllocatorState | undefined;
  if (!toRoot && hook?.capacity) {
    const capacity: Record<string, number[]> = {};
    for (const [k, v] of Object.entries(hook.capacity)) capacity[k] = v.map(() => 0);
    hooks[TREE_HOOK_NAME] = {
      ...hook,
      capacity,
      capacitySteps: (hook.capacitySteps ?? []).map(() => 0),
    };
  }
  return {
    config: ck.config,
    state: { ...ck.state, parents: plan.result.parents },
    progress: { ...ck.progress, hooks },
  };
}

/** The input's config.json metadata (hook name, dataset, ...) to carry into the new checkpoint. */
async function provenance(dir: string): Promise<CheckpointInfo> {
  const raw = JSON.parse(await Deno.readTextFile(join(dir, CONFIG_FILE)));
  const info: CheckpointInfo = {};
  for (const [k, v] of Object.entries({ ...raw.metadata, hook_name: raw.hook_name })) {
    if (k !== "arbor" && ["string", "number", "boolean"].includes(typeof v)) {
      info[k] = v as string | number | boolean;
    }
  }
  return info;
}

/** Load, plan, print, and (unless a dry run) save. Returns the exit code. */
export async function runReallocate(
  args: ReallocateArgs,
  print: (s: string) => void = console.log,
): Promise<number> {
  const ck = await loadCheckpoint(args.dir);
  const source = `${args.dir}/trainer_state.json`;
  const plan = planReallocation(
    ck.config,
    ck.state,
    ck.progress.hooks[TREE_HOOK_NAME],
    args,
    source,
  );
  const what = args.toRoot ? "root reset" : "reallocation (Algorithms 1-2)";
  print(`${args.dir} at step ${ck.state.step}: ${what}${args.dryRun ? " — dry run" : ""}`);
  for (const n of plan.notes) print(`note: ${n}`);
  print(summaryTable(plan, args.toRoot));
  if (args.dryRun) {
    print(movesText(plan, args.showMoves));
    return 0;
  }
  await saveCheckpoint(args.out!, applyPlan(ck, plan, args.toRoot), await provenance(args.dir));
  print(`wrote ${args.out}`);
  return 0;
}

/** `reallocate`: see the module doc. */
export const command: Command = {
  spec,
  run(parsed) {
    return runReallocate(parseReallocateArgs(parsed));
  },
};
