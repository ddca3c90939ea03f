/**
 * `arbor inspect DIR`: browse a trained SAE's feature tree (paper §6.1–6.3) — one feature
 * in the terminal (`--feature F`), the tree with densities and top tokens (`--tree`), or a
 * self-contained HTML explorer (`--html OUT`). Statistics come from encoding the first
 * `--tokens` rows of the dataset (`--data`, default the one recorded in the checkpoint).
 */
import { type CommandSpec, type ParsedCommand, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import type { EngineKind } from "../lib/train/engine_factory.ts";
import { DEFAULT_INSPECT_TOKENS, openInspection } from "../lib/inspect/inspection.ts";
import { formatFeature, formatTree } from "../lib/inspect/terminal.ts";
import { DEFAULT_MAX_GEOMETRY, DEFAULT_MAX_PAGES, writeExplorer } from "../lib/inspect/html.ts";

/** Flags of `inspect`. */
export const spec: CommandSpec = {
  name: "inspect",
  summary: "browse a trained SAE's feature tree in the terminal or as HTML",
  usage: "deno run -A cli/main.ts inspect DIR (--feature F | --tree | --html OUT) [flags]",
  flags: {
    feature: {
      type: "int",
      help: "show one feature: place in the tree, density, contexts, neighbours",
    },
    tree: { type: "boolean", help: "print the feature tree with per-node density and top tokens" },
    root: { type: "int", help: "--tree/--html: only the subtree under this feature" },
    depth: { type: "int", help: "--tree: levels shown below each top node (default: all)" },
    html: { type: "string", help: "write a self-contained HTML explorer into this folder" },
    data: {
      type: "string",
      help: "activation dataset (default: the one recorded in the checkpoint's config.json)",
    },
    "structure-only": {
      type: "boolean",
      help: "use no activation data (tree, parents, children and decoder neighbours only)",
    },
    tokens: {
      type: "int",
      default: DEFAULT_INSPECT_TOKENS,
      help: "encode the first N tokens of the dataset",
    },
    contexts: { type: "int", default: 10, help: "activating contexts shown per feature" },
    neighbours: { type: "int", default: 8, help: "nearest features by decoder cosine shown" },
    "max-pages": {
      type: "int",
      default: DEFAULT_MAX_PAGES,
      help: "--html: feature pages written (the features that fire most)",
    },
    "max-geometry": {
      type: "int",
      default: DEFAULT_MAX_GEOMETRY,
      help: "--html: §6.1 geometry plots drawn (densest parents first; each runs a PCA)",
    },
    "batch-size": { type: "int", default: 1024, help: "tokens per encoder call" },
    engine: { type: "string", help: "gpu or reference (default: gpu when available)" },
    format: {
      type: "string",
      help: "SAE folder layout: native, saelens, sparsify (default: detected from the files)",
    },
    seed: { type: "int", default: 0, help: "seed of the sampled tokens behind plots" },
  },
  positionals: true,
  examples: [
    "deno run -A cli/main.ts inspect runs/demo/tree --tree --depth 2",
    "deno run -A cli/main.ts inspect runs/demo/tree --feature 3",
    "deno run -A cli/main.ts inspect runs/tree4 --data acts/gpt2-l5 --html runs/tree4/explorer",
    "deno run -A cli/main.ts inspect runs/tree4 --tree --root 135 --structure-only",
    "deno run -A cli/main.ts inspect saelens/blocks.5 --data acts/gpt2-l5 --feature 12",
  ],
};

/** Parsed `inspect` command line. */
export interface InspectArgs {
  dir: string;
  feature?: number;
  tree: boolean;
  root?: number;
  depth: number;
  html?: string;
  data?: string;
  structureOnly: boolean;
  tokens: number;
  contexts: number;
  neighbours: number;
  maxPages: number;
  maxGeometry: number;
  batchSize: number;
  engine?: EngineKind;
  format?: string;
  seed: number;
}

function positive(p: ParsedCommand, name: string, min: number): number {
  const v = p.flags[name] as number;
  if (!(v >= min)) throw new UsageError(`inspect: --${name} must be at least ${min}, got ${v}`);
  return v;
}

/** Check the command line and fill defaults (pure; throws UsageError). */
export function parseInspectArgs(p: ParsedCommand): InspectArgs {
  if (p.positionals.length !== 1) {
    throw new UsageError(
      `inspect: expected one checkpoint folder, got ${p.positionals.length} (see inspect --help)`,
    );
  }
  const f = p.flags;
  if (f.feature === undefined && !f.tree && f.html === undefined) {
    throw new UsageError("inspect: say what to show: --feature F, --tree or --html OUT");
  }
  const engine = f.engine as string | undefined;
  if (engine !== undefined && engine !== "gpu" && engine !== "reference") {
    throw new UsageError(`inspect: --engine must be gpu or reference, got "${engine}"`);
  }
  if (f["structure-only"] && f.data !== undefined) {
    throw new UsageError("inspect: --structure-only and --data exclude each other");
  }
  const depth = f.depth === undefined ? Infinity : positive(p, "depth", 0);
  return {
    dir: p.positionals[0],
    ...(f.feature !== undefined ? { feature: f.feature as number } : {}),
    tree: Boolean(f.tree),
    ...(f.root !== undefined ? { root: f.root as number } : {}),
    depth,
    ...(f.html !== undefined ? { html: f.html as string } : {}),
    ...(f.data !== undefined ? { data: f.data as string } : {}),
    structureOnly: Boolean(f["structure-only"]),
    tokens: positive(p, "tokens", 1),
    contexts: positive(p, "contexts", 0),
    neighbours: positive(p, "neighbours", 0),
    maxPages: positive(p, "max-pages", 1),
    maxGeometry: positive(p, "max-geometry", 0),
    batchSize: positive(p, "batch-size", 1),
    ...(engine ? { engine: engine as EngineKind } : {}),
    ...(f.format !== undefined ? { format: f.format as string } : {}),
    seed: f.seed as number,
  };
}

/** Run `inspect`; returns the exit code. */
export async function runInspect(p: ParsedCommand): Promise<number> {
  const a = parseInspectArgs(p);
  const quiet = Boolean(p.flags.quiet);
  const notice = (line: string) => {
    if (!quiet) console.error(line);
  };
  const ins = await openInspection(a.dir, {
    ...(a.data !== undefined ? { data: a.data } : {}),
    noData: a.structureOnly,
    // The tree view alone works without data; the feature view and the explorer need it.
    requireData: a.feature !== undefined || a.html !== undefined,
    tokens: a.tokens,
    batchSize: a.batchSize,
    ...(a.engine ? { engine: a.engine } : {}),
    ...(a.format !== undefined ? { format: a.format } : {}),
    seed: a.seed,
    notice,
  });
  if (ins.dataProblem && !a.structureOnly) {
    notice(`note: ${ins.dataProblem}; showing the structure only`);
  }
  if (a.feature !== undefined) {
    console.log(
      formatFeature(ins, a.feature, { contexts: a.contexts, neighbours: a.neighbours, tokens: 8 }),
    );
  }
  if (a.tree) {
    if (a.feature !== undefined) console.log("");
    console.log(
      formatTree(ins, { ...(a.root !== undefined ? { root: a.root } : {}), depth: a.depth }),
    );
  }
  if (a.html !== undefined) {
    const r = await writeExplorer(ins, a.html, {
      maxPages: a.maxPages,
      maxGeometry: a.maxGeometry,
      ...(a.root !== undefined ? { root: a.root } : {}),
      contexts: a.contexts,
      neighbours: a.neighbours,
    });
    console.log(
      `explorer: ${r.index} (${r.pages} feature pages, ${r.geometryPlots} geometry plots)`,
    );
  }
  return 0;
}

/** The `inspect` subcommand. */
export const command: Command = { spec, run: runInspect };
