/** `arbor reallocate`: run the Tree SAE's dead-child reallocation (Alg. 1-2) on a checkpoint. */
import { type CommandSpec, NotImplementedError } from "./args.ts";
import type { Command } from "./command.ts";

/** Flags of `reallocate`. */
export const spec: CommandSpec = {
  name: "reallocate",
  summary: "run the Tree SAE's dead-child reallocation (Alg. 1-2) on a checkpoint",
  usage: "deno run -A cli/main.ts reallocate [flags]",
  flags: {},
  positionals: true,
};

/** Not built yet: say so and fail, never fake output. */
export const command: Command = {
  spec,
  run() {
    return Promise.reject(
      new NotImplementedError(
        "reallocate: the engine for this command has not landed yet (issue #4)",
      ),
    );
  },
};
