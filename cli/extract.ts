/** `arbor extract`: run a language model over a corpus and store its activations. */
import { type CommandSpec, NotImplementedError } from "./args.ts";
import type { Command } from "./command.ts";

/** Flags of `extract`. */
export const spec: CommandSpec = {
  name: "extract",
  summary: "run a language model over a corpus and store its activations",
  usage: "deno run -A cli/main.ts extract [flags]",
  flags: {},
  positionals: true,
};

/** Not built yet: say so and fail, never fake output. */
export const command: Command = {
  spec,
  run() {
    return Promise.reject(
      new NotImplementedError("extract: the engine for this command has not landed yet (issue #6)"),
    );
  },
};
