/**
 * `arbor evaluate DIR...`: compute the paper's metrics (DESIGN §6) for one or more SAE
 * checkpoints on stored activations, write one versioned JSON per SAE and print a table;
 * `--compare` prints the SAEs (or earlier result files) side by side.
 */
import { basename, join, resolve } from "node:path";
import { type CommandSpec, NotImplementedError, type ParsedCommand, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { DataError } from "../lib/errors.ts";
import { CONFIG_FILE, loadSae } from "../lib/train/checkpoint.ts";
import { ReferenceEngine } from "../lib/sae/reference_engine.ts";
import type { SaeEngine } from "../lib/sae/engine.ts";
import type { LoadedSae } from "../lib/train/checkpoint.ts";
import { getGpu, type Gpu } from "../lib/gpu/device.ts";
import { numFeatures } from "../lib/sae/config.ts";
import { readEvalRows } from "../lib/eval/eval_data.ts";
import {
  ACTIVATION_METRICS,
  DEFAULT_PROBE_TOKENS,
  evaluateSae,
  type MetricName,
  MODEL_METRICS,
} from "../lib/eval/evaluate_sae.ts";
import { HIERARCHY_MIN_CHILD_COUNT, HIERARCHY_PARENTS } from "../lib/eval/probes.ts";
import { DEFAULT_LOGREG } from "../lib/eval/logreg.ts";
import {
  type EvalResult,
  formatCompare,
  formatTable,
  makeResult,
  parseResult,
  resultJson,
} from "../lib/eval/results.ts";

/** Result file written into each checkpoint folder when --out is not given. */
export const RESULT_FILE = "eval.json";
/** Tokens evaluated by default (paper App. D.2 averages over 128K tokens). */
export const DEFAULT_EVAL_TOKENS = 131072;

/** Flags of `evaluate`. */
export const spec: CommandSpec = {
  name: "evaluate",
  summary: "compute the paper's metrics for one or more SAEs",
  usage: "deno run -A cli/main.ts evaluate DIR... [--data DIR] [--out PATH] [--compare] [flags]",
  flags: {
    data: {
      type: "string",
      help:
        "activation dataset to evaluate on (default: the data recorded in each checkpoint's config.json)",
    },
    out: {
      type: "string",
      help: `result file (one SAE) or folder (several); default DIR/${RESULT_FILE} per checkpoint`,
    },
    compare: {
      type: "boolean",
      help: "print all SAEs side by side (result .json files are read, not recomputed)",
    },
    tokens: {
      type: "int",
      default: DEFAULT_EVAL_TOKENS,
      help: "evaluate on the first N tokens of the dataset",
    },
    seed: { type: "int", default: 0, help: "seed of parent sampling and probe shuffles" },
    metrics: {
      type: "string",
      default: ACTIVATION_METRICS.join(","),
      help: `comma-separated subset of ${[...ACTIVATION_METRICS, ...MODEL_METRICS].join(", ")}`,
    },
    "probe-tokens": {
      type: "int",
      default: DEFAULT_PROBE_TOKENS,
      help: "tokens the hierarchy metric's probes train on",
    },
    parents: {
      type: "int",
      default: HIERARCHY_PARENTS,
      help: "parents sampled by the hierarchy metric (§5.2)",
    },
    "min-child-count": {
      type: "int",
      default: HIERARCHY_MIN_CHILD_COUNT,
      help: "children firing on fewer tokens are skipped by the hierarchy metric",
    },
    "probe-epochs": {
      type: "int",
      default: DEFAULT_LOGREG.epochs,
      help: "epochs of each probe fit",
    },
    "batch-size": { type: "int", default: 1024, help: "tokens per encoder call" },
    kernels: {
      type: "string",
      default: "gpu",
      help: "gpu, or reference (TS twins of the eval kernels)",
    },
  },
  positionals: true,
  examples: [
    "deno run -A cli/main.ts evaluate runs/demo",
    "deno run -A cli/main.ts evaluate runs/tree runs/topk --data acts/gpt2-l5 --compare",
    "deno run -A cli/main.ts evaluate runs/tree --metrics reconstruction,composition --out tree.json",
    "deno run -A cli/main.ts evaluate --compare runs/tree/eval.json runs/topk/eval.json",
  ],
};

/** Parsed `evaluate` command line. */
export interface EvaluateArgs {
  /** Checkpoint folders (expanded) and result files (.json, --compare only). */
  inputs: string[];
  data: string | undefined;
  out: string | undefined;
  compare: boolean;
  tokens: number;
  seed: number;
  metrics: MetricName[];
  probeTokens: number;
  parents: number;
  minChildCount: number;
  probeEpochs: number;
  batchSize: number;
  kernels: "gpu" | "reference";
}

/** Check the flags; throws UsageError naming the bad one. */
export function parseEvaluateArgs(p: ParsedCommand): EvaluateArgs {
  const f = p.flags;
  if (p.positionals.length === 0) {
    throw new UsageError("evaluate: give at least one checkpoint folder (see evaluate --help)");
  }
  const known = new Set<string>([...ACTIVATION_METRICS, ...MODEL_METRICS]);
  const metrics = String(f.metrics).split(",").map((s) => s.trim()).filter(Boolean);
  for (const m of metrics) {
    if (!known.has(m)) {
      throw new UsageError(
        `evaluate: unknown metric "${m}" in --metrics (known: ${[...known].join(", ")})`,
      );
    }
  }
  if (metrics.length === 0) throw new UsageError("evaluate: --metrics is empty");
  const positive = (name: string) => {
    const v = f[name] as number;
    if (!(v > 0)) throw new UsageError(`evaluate: --${name} must be positive, got ${v}`);
    return v;
  };
  const kernels = String(f.kernels);
  if (kernels !== "gpu" && kernels !== "reference") {
    throw new UsageError(`evaluate: --kernels must be gpu or reference, got "${kernels}"`);
  }
  const jsonInputs = p.positionals.filter((x) => x.endsWith(".json"));
  if (jsonInputs.length && !f.compare) {
    throw new UsageError(
      `evaluate: ${jsonInputs[0]} is a result file; result files are only read with --compare`,
    );
  }
  return {
    inputs: p.positionals,
    data: f.data as string | undefined,
    out: f.out as string | undefined,
    compare: Boolean(f.compare),
    tokens: positive("tokens"),
    seed: f.seed as number,
    metrics: metrics as MetricName[],
    probeTokens: positive("probe-tokens"),
    parents: positive("parents"),
    minChildCount: f["min-child-count"] as number,
    probeEpochs: positive("probe-epochs"),
    batchSize: positive("batch-size"),
    kernels,
  };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** A checkpoint folder, or a folder whose subfolders are checkpoints (sorted by name). */
export async function expandCheckpoints(dir: string): Promise<string[]> {
  if (await isFile(join(dir, CONFIG_FILE))) return [dir];
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory && await isFile(join(dir, e.name, CONFIG_FILE))) {
        found.push(join(dir, e.name));
      }
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new DataError(`${dir}: no such folder; pass a checkpoint folder written by train`);
    }
    throw e;
  }
  if (found.length === 0) {
    throw new DataError(
      `${dir}: no ${CONFIG_FILE} here or in its subfolders; pass a checkpoint folder written by train`,
    );
  }
  return found.sort();
}

/** The dataset recorded in a checkpoint's config.json (metadata.data or metadata.dataset), if any. */
async function recordedData(dir: string): Promise<string | undefined> {
  const raw = JSON.parse(await Deno.readTextFile(join(dir, CONFIG_FILE)));
  const meta = raw?.metadata ?? {};
  const v = meta.data ?? meta.dataset;
  if (typeof v !== "string" || v === "") return undefined;
  return resolve(dir, v);
}

function makeEngine(sae: LoadedSae): SaeEngine {
  // The TS reference engine encodes exactly as the contract says; the GPU engine can replace
  // it here once lib/sae/gpu_engine.ts lands (same SaeEngine interface).
  return new ReferenceEngine(sae.config, sae.state);
}

/** Evaluate one checkpoint folder; returns its result record. */
export async function evaluateCheckpoint(
  gpu: Gpu | null,
  dir: string,
  a: EvaluateArgs,
): Promise<EvalResult> {
  const sae = await loadSae(dir);
  const dataDir = a.data ?? await recordedData(dir);
  if (!dataDir) {
    throw new DataError(
      `${
        join(dir, CONFIG_FILE)
      }: records no dataset (metadata.data); pass the activations with --data DIR`,
    );
  }
  const rows = await readEvalRows(dataDir, a.tokens, sae.config.dIn, dir);
  const notComputed: Record<string, string> = {};
  for (const m of MODEL_METRICS) {
    if (!a.metrics.includes(m)) {
      notComputed[m] = "not requested (needs the language model; --metrics " + m + ")";
      continue;
    }
    if (!rows.manifest.has_tokens) {
      throw new DataError(
        `${
          join(dataDir, "manifest.json")
        }: --metrics ${m} needs token files (tokens-NNNNN.bin) to re-run ` +
          "the language model; extract the dataset with token files or drop " + m +
          " from --metrics",
      );
    }
    throw new NotImplementedError(
      `evaluate: --metrics ${m} (issue #7 items 5-6, language-model metrics) is not implemented yet; ` +
        `use ${ACTIVATION_METRICS.join(",")}`,
    );
  }
  const engine = makeEngine(sae);
  try {
    const metrics = await evaluateSae(
      gpu,
      {
        config: sae.config,
        decW: sae.state.decW,
        parents: sae.state.parents,
        engine,
      },
      rows,
      {
        metrics: a.metrics,
        seed: a.seed,
        batchSize: a.batchSize,
        probeTokens: a.probeTokens,
        hierarchy: {
          nParents: a.parents,
          minChildCount: a.minChildCount,
          probe: { ...DEFAULT_LOGREG, epochs: a.probeEpochs, seed: a.seed },
        },
      },
    );
    const m = rows.manifest;
    return makeResult({
      name: basename(resolve(dir)),
      sae: { dir, config: sae.config, n: numFeatures(sae.config) },
      data: {
        dir: dataDir,
        tokens_evaluated: rows.rows,
        total_tokens: m.total_tokens,
        dtype: m.dtype,
        d_in: m.d_in,
        has_tokens: m.has_tokens,
        provenance: m.provenance,
      },
      seed: a.seed,
      metrics,
      not_computed: notComputed,
    });
  } finally {
    engine.destroy();
  }
}

async function writeResult(path: string, r: EvalResult) {
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, resultJson(r));
  await Deno.rename(tmp, path);
}

/** Run `evaluate`; returns the exit code. */
export async function runEvaluate(p: ParsedCommand): Promise<number> {
  const a = parseEvaluateArgs(p);
  const quiet = Boolean(p.flags.quiet);
  const results: EvalResult[] = [];
  const checkpoints: string[] = [];
  for (const input of a.inputs) {
    if (input.endsWith(".json")) {
      results.push(parseResult(await Deno.readTextFile(input), input));
    } else {
      checkpoints.push(...await expandCheckpoints(input));
    }
  }
  if (a.out && checkpoints.length > 1) await Deno.mkdir(a.out, { recursive: true });
  const gpu = a.kernels === "gpu" && checkpoints.length ? await getGpu({ quiet }) : null;
  for (const dir of checkpoints) {
    const r = await evaluateCheckpoint(gpu, dir, a);
    const out = a.out
      ? (checkpoints.length > 1 ? join(a.out, `${r.name}.json`) : a.out)
      : join(dir, RESULT_FILE);
    await writeResult(out, r);
    results.push(r);
    if (!a.compare) {
      console.log(`${dir} → ${out}`);
      console.log(formatTable(r));
      console.log("");
    }
  }
  if (a.compare) console.log(formatCompare(results));
  return 0;
}

/** The `evaluate` subcommand. */
export const command: Command = { spec, run: runEvaluate };
