/**
 * Flag specs shared by every subcommand: one table per command drives parsing
 * (strict `node:util` parseArgs), number conversion, and the `--help` text, so the
 * help can never disagree with what is parsed.
 */
import { parseArgs } from "node:util";

/** Thrown for bad command lines; `cli/main.ts` prints it on one line and exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Thrown when a subcommand's engine has not landed yet; exits 3. */
export class NotImplementedError extends Error {
  override name = "NotImplementedError";
}

/** The kind of value a flag takes. `list` is a comma-separated list of numbers. */
export type FlagType = "string" | "number" | "int" | "boolean" | "list";

/** One flag of a subcommand. */
export interface FlagSpec {
  /** Value kind; numbers are validated and converted. */
  type: FlagType;
  /** Default value shown in `--help` (undefined: no default, flag optional). */
  default?: string | number | boolean | number[];
  /** One line of help. */
  help: string;
  /** Single-letter alias. */
  short?: string;
}

/** A subcommand: its flags, usage line, description and worked examples. */
export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  flags: Record<string, FlagSpec>;
  /** Whether positional arguments are accepted. */
  positionals?: boolean;
  examples?: string[];
}

/** Flags every subcommand accepts. */
export const GLOBAL_FLAGS: Record<string, FlagSpec> = {
  help: { type: "boolean", short: "h", help: "show this help and exit" },
  quiet: {
    type: "boolean",
    short: "q",
    help: "print only results and errors (hides the adapter line)",
  },
};

/** Parsed flags: values converted to their declared types. */
export type ParsedFlags = Record<string, string | number | boolean | number[] | undefined>;

/** Result of parsing a subcommand's argv. */
export interface ParsedCommand {
  flags: ParsedFlags;
  positionals: string[];
}

function allFlags(spec: CommandSpec): Record<string, FlagSpec> {
  return { ...spec.flags, ...GLOBAL_FLAGS };
}

function toNumber(flag: string, raw: string, type: FlagType): number {
  const v = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(v)) {
    throw new UsageError(`--${flag} expects a number, got "${raw}"`);
  }
  if (type === "int" && !Number.isInteger(v)) {
    throw new UsageError(`--${flag} expects an integer, got "${raw}"`);
  }
  return v;
}

/** Parse `argv` against a command spec; throws UsageError naming the bad flag. */
export function parseCommand(spec: CommandSpec, argv: string[]): ParsedCommand {
  const flags = allFlags(spec);
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const [name, f] of Object.entries(flags)) {
    options[name] = { type: f.type === "boolean" ? "boolean" : "string" };
    if (f.short) options[name].short = f.short;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options,
      strict: true,
      allowPositionals: true,
      allowNegative: true,
    });
  } catch (e) {
    throw new UsageError(explainParseError(spec.name, (e as Error).message));
  }
  if (!spec.positionals && parsed.positionals.length > 0 && !parsed.values.help) {
    throw new UsageError(
      `${spec.name}: unexpected argument "${parsed.positionals[0]}" (see --help)`,
    );
  }
  const out: ParsedFlags = {};
  for (const [name, f] of Object.entries(flags)) {
    const raw = parsed.values[name];
    if (raw === undefined) {
      out[name] = f.default;
      continue;
    }
    if (f.type === "boolean") out[name] = raw as boolean;
    else if (f.type === "string") out[name] = raw as string;
    else if (f.type === "list") {
      out[name] = (raw as string).split(",").map((s) => toNumber(name, s, "number"));
    } else out[name] = toNumber(name, raw as string, f.type);
  }
  return { flags: out, positionals: parsed.positionals };
}

function explainParseError(command: string, message: string): string {
  // node's messages are long and mention "parseArgs"; keep the flag, drop the noise.
  const unknown = message.match(/Unknown option '([^']+)'/);
  if (unknown) return `${command}: unknown flag ${unknown[1]} (see ${command} --help)`;
  const missing = message.match(/Option '(?:-\w, )?(--[\w-]+)[^']*' argument missing/);
  if (missing) return `${command}: ${missing[1]} needs a value`;
  const bool = message.match(/Option '(?:-\w, )?(--[\w-]+)' does not take an argument/);
  if (bool) return `${command}: ${bool[1]} is a switch and takes no value`;
  return `${command}: ${message.split("\n")[0]}`;
}

function formatDefault(f: FlagSpec): string {
  if (f.default === undefined || f.default === false) return "";
  const v = Array.isArray(f.default) ? f.default.join(",") : String(f.default);
  return ` (default: ${v})`;
}

/** The `--help` text of a subcommand: usage, every flag with its default, examples. */
export function helpText(spec: CommandSpec): string {
  const flags = allFlags(spec);
  const rows = Object.entries(flags).map(([name, f]) => {
    const value = f.type === "boolean" ? "" : f.type === "list" ? " a,b,..." : " <" + f.type + ">";
    const left = (f.short ? `-${f.short}, ` : "    ") + `--${name}${value}`;
    return [left, f.help + formatDefault(f)];
  });
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  const lines = [
    `arbor ${spec.name} — ${spec.summary}`,
    "",
    `Usage: ${spec.usage}`,
    "",
    "Flags:",
    ...rows.map(([l, r]) => "  " + l.padEnd(width) + r),
  ];
  if (spec.examples?.length) {
    lines.push("", "Examples:", ...spec.examples.map((e) => "  " + e));
  }
  return lines.join("\n");
}

/** Read a string flag that must be present. */
export function requireString(flags: ParsedFlags, name: string, command: string): string {
  const v = flags[name];
  if (typeof v !== "string" || v === "") {
    throw new UsageError(`${command}: --${name} is required (see ${command} --help)`);
  }
  return v;
}
