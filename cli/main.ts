/**
 * Arbor command-line entry point: `deno run -A cli/main.ts <command> [flags]`.
 * Parses the command name, dispatches to `cli/<command>.ts`, and is the only
 * place that turns errors into exit codes (2: usage, 3: not implemented, 1: other).
 */
import { helpText, NotImplementedError, parseCommand, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { VERSION } from "../lib/version.ts";
import { ArborError } from "../lib/errors.ts";

const COMMANDS: Record<string, () => Promise<Command>> = {
  extract: async () => (await import("./extract.ts")).command,
  train: async () => (await import("./train.ts")).command,
  reallocate: async () => (await import("./reallocate.ts")).command,
  evaluate: async () => (await import("./evaluate.ts")).command,
  inspect: async () => (await import("./inspect.ts")).command,
  synth: async () => (await import("./synth.ts")).command,
  export: async () => (await import("./export.ts")).command,
};

const SUMMARIES: Record<string, string> = {
  extract: "run a language model over a corpus and store its activations",
  train: "train a Tree SAE or a baseline (TopK, BatchTopK, Matryoshka, MP) on stored activations",
  reallocate: "run the Tree SAE's dead-child reallocation (Alg. 1-2) on a checkpoint",
  evaluate: "compute the paper's metrics for one or more SAEs",
  inspect: "browse a trained SAE's feature tree in the terminal or as HTML",
  synth: "generate a synthetic activation dataset from a known feature tree",
  export: "write a checkpoint in another library's layout (SAELens, ...)",
};

/** Top-level help: the subcommands and global flags. */
export function mainHelp(): string {
  const width = Math.max(...Object.keys(SUMMARIES).map((k) => k.length)) + 2;
  return [
    `arbor ${VERSION} — hierarchical sparse autoencoders on WebGPU`,
    "",
    "Usage: deno run -A cli/main.ts <command> [flags]",
    "",
    "Commands:",
    ...Object.entries(SUMMARIES).map(([k, v]) => "  " + k.padEnd(width) + v),
    "",
    "Global flags:",
    "  -h, --help      show help (also after a command: train --help)",
    "  --version       print the version and exit",
    "  -q, --quiet     print only results and errors",
    "",
    "With no data, `train` generates the built-in synthetic hierarchy and trains a Tree SAE.",
  ].join("\n");
}

/** Run the CLI on `argv`; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(mainHelp());
    return 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`arbor ${VERSION}`);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(
      `arbor: unknown command "${name}" (commands: ${Object.keys(COMMANDS).join(", ")})`,
    );
    return 2;
  }
  const command = await load();
  try {
    const parsed = parseCommand(command.spec, rest);
    if (parsed.flags.help) {
      console.log(helpText(command.spec));
      return 0;
    }
    return await command.run(parsed);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`arbor: ${e.message}`);
      return 2;
    }
    if (e instanceof NotImplementedError) {
      console.error(`arbor: ${e.message}`);
      return 3;
    }
    if (e instanceof ArborError) {
      console.error(`arbor ${name}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
