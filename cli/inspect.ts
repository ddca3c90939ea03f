/** `arbor inspect`: browse a trained SAE's feature tree. */
import { type CommandSpec, NotImplementedError } from "./args.ts";
import type { Command } from "./command.ts";

/** Flags of `inspect`. */
export const spec: CommandSpec = {
  name: "inspect",
  summary: "browse a trained SAE's feature tree",
  usage: "deno run -A cli/main.ts inspect [flags]",
  flags: {},
  positionals: true,
};

/** Not built yet: say so and fail, never fake output. */
export const command: Command = {
  spec,
  run() {
    return Promise.reject(
      new NotImplementedError("inspect: the engine for this command has not landed yet (issue #8)"),
    );
  },
};
