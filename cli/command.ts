/** The shape every subcommand module exports, so `cli/main.ts` can dispatch uniformly. */
import type { CommandSpec, ParsedCommand } from "./args.ts";

/** A subcommand: its flag table and the function that runs it (returns the exit code). */
export interface Command {
  spec: CommandSpec;
  run(args: ParsedCommand): Promise<number>;
}
