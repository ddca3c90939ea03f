/**
 * `arbor evaluate DIR...`: compute the paper's metrics (DESIGN §6) for one or more SAE
 * checkpoints on stored activations, write one versioned JSON per SAE and print a table;
 * `--compare` prints the SAEs (or earlier result files) side by side.
 */
import { basename, isAbsolute, join, resolve } from "node:path";
import { type CommandSpec, type ParsedCommand, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { DataError } from "../lib/errors.ts";
import type { SaeEngine } from "../lib/sae/engine.ts";
import {
  detectSaeFormat,
  LAYOUTS_TEXT,
  OPEN_FORMATS,
  type OpenedSae,
  openSae,
} from "../lib/format/open_sae.ts";
import { getGpu, type Gpu } from "../lib/gpu/device.ts";
import { numFeatures } from "../lib/sae/config.ts";
import { type EvalRows, readEvalRows } from "../lib/eval/eval_data.ts";
import { downstreamMetrics } from "../lib/eval/downstream.ts";
import { firstLetterAbsorption } from "../lib/eval/first_letter_model.ts";
import { FIRST_LETTER_PROBE } from "../lib/eval/first_letter.ts";
import { DEFAULT_L1_PROBE } from "../lib/eval/first_letter_sparse.ts";
import { loadGpt2Model } from "../lib/lm/load.ts";
import { resolveModel } from "../lib/lm/model_files.ts";
import { parseHook } from "../lib/lm/hooks.ts";
import {
  ACTIVATION_METRICS,
  DEFAULT_PROBE_TOKENS,
  evaluateSae,
  type MetricName,
  type MetricsRecord,
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
/** Tokens of the downstream CE metric by default (each runs through the model three times). */
export const DEFAULT_CE_TOKENS = 16384;

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
    model: {
      type: "string",
      help:
        "downstream, absorption: language model folder or hub id (default: the dataset's provenance.model)",
    },
    "ce-tokens": {
      type: "int",
      default: DEFAULT_CE_TOKENS,
      help: "downstream: tokens (whole windows) run through the model three times",
    },
    kl: {
      type: "boolean",
      help: "downstream: also the KL divergence to the clean model (full logits, slower)",
    },
    offline: { type: "boolean", help: "downstream, absorption: never download the model" },
    "absorption-words": {
      type: "int",
      default: 0,
      help:
        "absorption: use a seeded sample of N alphabetic vocabulary words (0: the whole vocabulary, as SAEBench)",
    },
    format: {
      type: "string",
      help: `SAE folder layout: ${
        OPEN_FORMATS.join(", ")
      } (default: detected from the files; imported SAEs encode on the CPU)`,
    },
    kernels: {
      type: "string",
      default: "gpu",
      help: "gpu, or reference (TS reference engine and TS twins of the eval kernels)",
    },
  },
  positionals: true,
  examples: [
    "deno run -A cli/main.ts evaluate runs/demo",
    "deno run -A cli/main.ts evaluate runs/tree runs/topk --data acts/gpt2-l5 --compare",
    "deno run -A cli/main.ts evaluate runs/tree --metrics reconstruction,composition --out tree.json",
    "deno run -A cli/main.ts evaluate --compare runs/tree/eval.json runs/topk/eval.json",
    "deno run -A cli/main.ts evaluate saelens/blocks.5 --data acts/gpt2-l5 --metrics reconstruction",
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
  model: string | undefined;
  ceTokens: number;
  kl: boolean;
  offline: boolean;
  absorptionWords: number;
  /** SAE folder layout (undefined: detected). */
  format: string | undefined;
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
  const nonNegative = (v: number) => {
    if (!(v >= 0)) throw new UsageError(`evaluate: --absorption-words must be ≥ 0, got ${v}`);
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
    model: f.model as string | undefined,
    ceTokens: positive("ce-tokens"),
    kl: Boolean(f.kl),
    offline: Boolean(f.offline),
    absorptionWords: nonNegative(f["absorption-words"] as number),
    format: f.format as string | undefined,
  };
}

/**
 * An SAE folder (checkpoint, SAELens or sparsify; see lib/format/open_sae.ts), or a folder
 * whose subfolders are (sorted by name). With `format` the folder itself is taken as that.
 */
export async function expandCheckpoints(dir: string, format?: string): Promise<string[]> {
  if (format !== undefined || await detectSaeFormat(dir)) return [dir];
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory && await detectSaeFormat(join(dir, e.name))) {
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
      `${dir}: no config.json here or in its subfolders, nor another SAE layout (looked for ` +
        `${LAYOUTS_TEXT}); pass a checkpoint folder written by train, a SAELens or a sparsify folder`,
    );
  }
  return found.sort();
}

/**
 * The dataset recorded in a checkpoint's config.json (metadata.data, as `train` wrote it:
 * relative to the folder train ran in; a SAELens export keeps it in cfg.json), if any. A
 * relative path that does not exist from here is tried relative to the checkpoint folder.
 */
async function recordedData(dir: string, metadataFile: string): Promise<string | undefined> {
  const raw = JSON.parse(await Deno.readTextFile(metadataFile));
  const meta = raw?.metadata ?? {};
  const v = meta.data ?? meta.dataset;
  if (typeof v !== "string" || v === "") return undefined;
  if (isAbsolute(v) || await exists(v)) return v;
  return resolve(dir, v);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The engine that encodes: the WebGPU engine when it works, else the TS reference (with a note). */
function makeEngine(sae: OpenedSae, a: EvaluateArgs, quiet: boolean): Promise<SaeEngine> {
  const notice = (line: string) => {
    if (!quiet) console.error(line);
  };
  return sae.createEngine(a.kernels === "reference" ? "reference" : undefined, notice);
}

/** Evaluate one checkpoint folder; returns its result record. */
export async function evaluateCheckpoint(
  gpu: Gpu | null,
  dir: string,
  a: EvaluateArgs,
  quiet = false,
): Promise<EvalResult> {
  const sae = await openSae(dir, a.format);
  const dataDir = a.data ?? await recordedData(dir, sae.metadataFile);
  if (!dataDir) {
    throw new DataError(
      `${sae.metadataFile}: records no dataset (metadata.data); pass the activations with --data DIR`,
    );
  }
  const rows = await readEvalRows(dataDir, a.tokens, sae.config.dIn, dir);
  const notComputed: Record<string, string> = {};
  for (const m of MODEL_METRICS) {
    if (!a.metrics.includes(m)) {
      notComputed[m] = "not requested (needs the language model; --metrics " + m + ")";
      continue;
    }
    if (m === "downstream" && !rows.manifest.has_tokens) {
      throw new DataError(
        `${
          join(dataDir, "manifest.json")
        }: --metrics ${m} needs token files (tokens-NNNNN.bin) to re-run ` +
          "the language model; extract the dataset with token files or drop " + m +
          " from --metrics",
      );
    }
  }
  const engine = await makeEngine(sae, a, quiet);
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
    if (a.metrics.includes("downstream")) {
      metrics.downstream = await downstreamFor(gpu, engine, rows, dataDir, a);
    }
    if (a.metrics.includes("absorption")) {
      metrics.absorption = await absorptionFor(gpu, engine, sae, rows, dataDir, a);
    }
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

/** The downstream CE metric of one SAE on the dataset's token windows (provenance: model, hook, context). */
async function downstreamFor(
  gpu: Gpu | null,
  engine: SaeEngine,
  rows: EvalRows,
  dataDir: string,
  a: EvaluateArgs,
): Promise<NonNullable<MetricsRecord["downstream"]>> {
  const mpath = join(dataDir, "manifest.json");
  const prov = rows.manifest.provenance;
  const spec = a.model ?? (typeof prov.model === "string" ? prov.model : undefined);
  if (!spec) throw new DataError(`${mpath}: provenance names no model; pass --model DIR`);
  if (typeof prov.hook !== "string") {
    throw new DataError(
      `${mpath}: provenance names no hook (e.g. "resid_pre.5"); re-extract with arbor extract`,
    );
  }
  const context = prov.context;
  if (typeof context !== "number" || !(context > 0)) {
    throw new DataError(
      `${mpath}: provenance has no window length (context); re-extract with arbor extract`,
    );
  }
  const windows = Math.floor(Math.min(a.ceTokens, rows.rows) / context);
  if (windows === 0) {
    throw new DataError(
      `${mpath}: downstream needs at least one whole window of ${context} tokens; raise --tokens/--ce-tokens`,
    );
  }
  const device = gpu ?? await getGpu({ quiet: true });
  const model = await loadGpt2Model(device, await resolveModel(spec, { offline: a.offline }));
  try {
    if (model.config.nEmbd !== rows.d) {
      throw new DataError(
        `${mpath}: model ${spec} has width ${model.config.nEmbd} but the activations have d_in = ${rows.d}; ` +
          "pass the model the dataset was extracted from (--model)",
      );
    }
    const hook = parseHook(prov.hook, model.config.nLayer);
    const result = await downstreamMetrics({
      model,
      hook,
      tokens: rows.tokenIds!.subarray(0, windows * context),
      seq: context,
      windowsPerPass: a.kl ? 1 : 8,
      kl: a.kl,
      reconstruct: async (x, n) => {
        const out = new Float32Array(x.length);
        for (let r0 = 0; r0 < n; r0 += a.batchSize) {
          const B = Math.min(a.batchSize, n - r0);
          out.set(
            await engine.reconstruct(x.subarray(r0 * rows.d, (r0 + B) * rows.d), B),
            r0 * rows.d,
          );
        }
        return out;
      },
    });
    return { ...result, params: { model: spec, hook: prov.hook, tokens: windows * context } };
  } finally {
    model.destroy();
  }
}

/** First-letter absorption and splitting of one SAE with the dataset's model and hook. */
async function absorptionFor(
  gpu: Gpu | null,
  engine: SaeEngine,
  sae: OpenedSae,
  rows: EvalRows,
  dataDir: string,
  a: EvaluateArgs,
): Promise<NonNullable<MetricsRecord["absorption"]>> {
  const mpath = join(dataDir, "manifest.json");
  const prov = rows.manifest.provenance;
  const spec = a.model ?? (typeof prov.model === "string" ? prov.model : undefined);
  if (!spec) {
    throw new DataError(
      `${mpath}: provenance names no model; --metrics absorption needs the language model: pass --model DIR`,
    );
  }
  if (typeof prov.hook !== "string") {
    throw new DataError(
      `${mpath}: provenance names no hook (e.g. "resid_pre.5"); re-extract with arbor extract`,
    );
  }
  const device = gpu ?? await getGpu({ quiet: true });
  const modelDir = await resolveModel(spec, { offline: a.offline });
  const model = await loadGpt2Model(device, modelDir);
  try {
    if (model.config.nEmbd !== rows.d) {
      throw new DataError(
        `${mpath}: model ${spec} has width ${model.config.nEmbd} but the activations have d_in = ${rows.d}; ` +
          "pass the model the dataset was extracted from (--model)",
      );
    }
    return await firstLetterAbsorption(
      gpu,
      model,
      { hook: parseHook(prov.hook, model.config.nLayer), modelDir, modelName: spec },
      {
        d: rows.d,
        n: numFeatures(sae.config),
        decW: sae.state.decW,
        encode: (x, B) => engine.encode(x, B),
      },
      {
        data: { seed: a.seed, maxWords: a.absorptionWords },
        metric: {
          seed: a.seed,
          batchSize: a.batchSize,
          probe: { ...FIRST_LETTER_PROBE, epochs: a.probeEpochs },
          sparse: { ...DEFAULT_L1_PROBE, epochs: a.probeEpochs },
        },
      },
    );
  } finally {
    model.destroy();
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
      checkpoints.push(...await expandCheckpoints(input, a.format));
    }
  }
  if (a.out && checkpoints.length > 1) await Deno.mkdir(a.out, { recursive: true });
  const gpu = a.kernels === "gpu" && checkpoints.length ? await getGpu({ quiet }) : null;
  for (const dir of checkpoints) {
    const r = await evaluateCheckpoint(gpu, dir, a, quiet);
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
