/** `arbor export`: write a checkpoint in another library's layout. */
import { type CommandSpec, NotImplementedError } from "./args.ts";
import type { Command } from "./command.ts";

/** Flags of `export`. */
export const spec: CommandSpec = {
  name: "export",
  summary: "write a checkpoint in another library's layout",
  usage: "deno run -A cli/main.ts export [flags]",
  flags: {},
  positionals: true,
};

/** Not built yet: say so and fail, never fake output. */
export const command: Command = {
  spec,
  run() {
    return Promise.reject(
      new NotImplementedError("export: the engine for this command has not landed yet (issue #9)"),
    );
  },
};
