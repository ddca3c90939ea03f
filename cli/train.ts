/** `arbor train`: train a Tree SAE or a baseline on stored activations. */
import { type CommandSpec, NotImplementedError } from "./args.ts";
import type { Command } from "./command.ts";

/** Flags of `train`. */
export const spec: CommandSpec = {
  name: "train",
  summary: "train a Tree SAE or a baseline on stored activations",
  usage: "deno run -A cli/main.ts train [flags]",
  flags: {},
  positionals: true,
};

/** Not built yet: say so and fail, never fake output. */
export const command: Command = {
  spec,
  run() {
    return Promise.reject(
      new NotImplementedError("train: the engine for this command has not landed yet (issue #3)"),
    );
  },
};
