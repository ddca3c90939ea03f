/** `arbor evaluate`: compute the paper's metrics for one or more SAEs. */
import { type CommandSpec, NotImplementedError } from "./args.ts";
import type { Command } from "./command.ts";

/** Flags of `evaluate`. */
export const spec: CommandSpec = {
  name: "evaluate",
  summary: "compute the paper's metrics for one or more SAEs",
  usage: "deno run -A cli/main.ts evaluate [flags]",
  flags: {},
  positionals: true,
};

/** Not built yet: say so and fail, never fake output. */
export const command: Command = {
  spec,
  run() {
    return Promise.reject(
      new NotImplementedError(
        "evaluate: the engine for this command has not landed yet (issue #7)",
      ),
    );
  },
};
