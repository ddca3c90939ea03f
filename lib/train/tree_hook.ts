/**
 * Plugs the Tree SAE's dynamic allocation (lib/tree/trainer_hook.ts: capacity every step,
 * scheduled Algorithm 2 and the root reset) into the trainer as a TrainerHook: its records
 * go to metrics.jsonl, its log lines to the console, its state into every checkpoint.
 */
import type { SaeConfig } from "../sae/config.ts";
import {
  TREE_HOOK_NAME,
  TreeAllocator,
  type TreeAllocatorOptions,
  type TreeAllocatorState,
} from "../tree/trainer_hook.ts";
import type { TrainerHook } from "./trainer.ts";

/** The allocation hook for a tree config, or null when there is nothing to allocate (one layer). */
export function treeAllocationHook(
  config: SaeConfig,
  opts: Omit<TreeAllocatorOptions, "log">,
): TrainerHook | null {
  if (config.arch !== "tree" || config.layers.length < 2) return null;
  let print: (line: string) => void = () => {};
  const allocator = new TreeAllocator(config, { ...opts, log: (line) => print(line) });
  return {
    name: TREE_HOOK_NAME,
    async afterStep(stats, engine, ctx) {
      print = ctx.print;
      for (const record of await allocator.afterStep(stats, engine)) await ctx.log({ ...record });
    },
    saveState: () => ({ json: allocator.toState() }),
    loadState: (json) => allocator.loadState(json as TreeAllocatorState, "trainer_state.json"),
  };
}
