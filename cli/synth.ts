/** `arbor synth`: generate a synthetic activation dataset from a known feature tree. */
import { type CommandSpec, NotImplementedError } from "./args.ts";
import type { Command } from "./command.ts";

/** Flags of `synth`. */
export const spec: CommandSpec = {
  name: "synth",
  summary: "generate a synthetic activation dataset from a known feature tree",
  usage: "deno run -A cli/main.ts synth [flags]",
  flags: {},
  positionals: true,
};

/** Not built yet: say so and fail, never fake output. */
export const command: Command = {
  spec,
  run() {
    return Promise.reject(
      new NotImplementedError("synth: the engine for this command has not landed yet (issue #5)"),
    );
  },
};
