/** `arbor train`: train a Tree SAE or a baseline on stored activations. */
import { type CommandSpec, type ParsedFlags, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { ArborError } from "../lib/errors.ts";
import {
  DEFAULT_AUX_K,
  DEFAULT_DEAD_TOKENS,
  DEFAULT_LR,
  makeConfig,
  SAE_ARCHS,
  type SaeArch,
  type SaeConfig,
} from "../lib/sae/config.ts";
import type { SaeState } from "../lib/sae/engine.ts";
import { storeSource } from "../lib/train/batch_source.ts";
import {
  type CheckpointInfo,
  loadCheckpoint,
  readCheckpointInfo,
  TRAINER_JSON_FILE,
  type TrainerProgress,
} from "../lib/train/checkpoint.ts";
import { createEngine, type EngineKind } from "../lib/train/engine_factory.ts";
import { ensureWritableDir, METRICS_FILE, train, type TrainerHook } from "../lib/train/trainer.ts";
import { treeTrainerHook } from "../lib/tree/trainer_hook.ts";
import { getPreset, PRESET_NAMES } from "../lib/tree/presets.ts";
import { ensureDefaultDataset } from "../lib/synth/default.ts";

/** Rows per batch (paper App. C trains with batches of 4096 tokens). */
const DEFAULT_BATCH = 4096;
/** Active features per token for topk / batchtopk / matryoshka (paper Table 1's L0 = 32 setting). */
const DEFAULT_K = 32;

/**
 * `train` with no --data: the built-in synthetic hierarchy (lib/synth/default.ts: 50 true
 * features in 3 levels, d_in = 32, 200k tokens). Sizes and thresholds are scaled to a run
 * of ~200 steps so dead features, AuxK and reallocation all happen within minutes.
 */
const DEMO = {
  out: "runs/demo",
  arch: "tree" as SaeArch,
  layers: { tree: [8, 24, 48], matryoshka: [16, 48], flat: [64] },
  kPerLayer: [2, 2, 1],
  k: 4,
  batch: 1024,
  lr: 1e-3,
  deadTokens: 20_000,
  /** Five passes over the 200k tokens: ~1,000 steps. */
  maxTokens: 1_000_000,
};

/** Flags that define the model; a resumed run takes them from its checkpoint. */
const MODEL_FLAGS = [
  "arch",
  "k",
  "n-features",
  "layers",
  "k-per-layer",
  "aux-k",
  "aux-alpha",
  "seed",
  "dead-tokens",
  "lr",
];

/** Flags of `train`. */
export const spec: CommandSpec = {
  name: "train",
  summary: "train a Tree SAE or a baseline on stored activations",
  usage: "deno run -A cli/main.ts train [--data DIR --out DIR] [flags]",
  flags: {
    preset: {
      type: "string",
      help: `paper configuration (arch, layers, k, AuxK α; App. C Tables 1–2): ${
        PRESET_NAMES.join(", ")
      }`,
    },
    arch: { type: "string", help: `architecture: ${SAE_ARCHS.join(" | ")} (default: tree)` },
    data: {
      type: "string",
      help:
        "activation dataset folder (from extract or synth); without it: the built-in synthetic hierarchy",
    },
    out: {
      type: "string",
      short: "o",
      help: `output folder: checkpoint + ${METRICS_FILE} (default with no --data: ${DEMO.out})`,
    },
    lr: { type: "number", help: `Adam learning rate (default: ${DEFAULT_LR}; demo ${DEMO.lr})` },
    batch: {
      type: "int",
      help: `tokens per batch (default: ${DEFAULT_BATCH}; demo ${DEMO.batch})`,
    },
    k: {
      type: "int",
      help:
        `active features per token, topk/batchtopk/matryoshka (default: ${DEFAULT_K}; demo ${DEMO.k})`,
    },
    "n-features": {
      type: "int",
      help: "dictionary size n for topk/batchtopk (or the sum of --layers)",
    },
    layers: {
      type: "list",
      help: "features per layer: tree privilege layers, or matryoshka nested groups (sum = n)",
    },
    "k-per-layer": { type: "list", help: "tree: active features per layer, e.g. 21,5,4,2" },
    "aux-k": {
      type: "int",
      help: `dead features AuxK uses per token (default: ${DEFAULT_AUX_K}; 0 = off)`,
    },
    "aux-alpha": {
      type: "list",
      help:
        "AuxK coefficient(s): tree one per layer (default 1/32,0,...), others one value (default 1/32)",
    },
    "max-tokens": {
      type: "int",
      help: `tokens to train on (default: one pass over the data; demo ${DEMO.maxTokens}; ` +
        "resume: the original plan)",
    },
    seed: { type: "int", help: "seed of the initialisation and the data shuffle (default: 0)" },
    "dead-tokens": {
      type: "int",
      help:
        `a feature is dead after this many tokens without firing (default: ${DEFAULT_DEAD_TOKENS}; demo ${DEMO.deadTokens})`,
    },
    "log-every": {
      type: "int",
      default: 50,
      help: `steps between ${METRICS_FILE} lines and progress updates`,
    },
    "checkpoint-every": {
      type: "int",
      default: 1000,
      help: "steps between checkpoints (0: only at the end)",
    },
    resume: {
      type: "string",
      help: "continue the run checkpointed in this folder (model flags come from it)",
    },
    engine: {
      type: "string",
      help:
        "gpu | reference (default: gpu, or the reference engine with a notice when WebGPU fails)",
    },
    reallocation: {
      type: "boolean",
      default: true,
      help: "tree: dynamic allocation of dead children (--no-reallocation: off)",
    },
    overwrite: { type: "boolean", help: "replace a checkpoint already in --out" },
  },
  examples: [
    "deno run -A cli/main.ts train                      # demo: Tree SAE on the built-in synthetic hierarchy",
    "deno run -A cli/main.ts train --data runs/gpt2-l5 --out runs/tree4 --arch tree --layers 1536,3072,9216,10752 --k-per-layer 21,5,4,2",
    "deno run -A cli/main.ts train --data runs/gpt2-l5 --out runs/tree4-32 --preset tree-4layer-l0-32",
    "deno run -A cli/main.ts train --data runs/gpt2-l5 --out runs/topk --arch topk --n-features 24576 --k 32",
    "deno run -A cli/main.ts train --data runs/gpt2-l5 --out runs/mat --arch matryoshka --layers 1536,3072,9216,10752 --k 32",
    "deno run -A cli/main.ts train --data runs/gpt2-l5 --resume runs/tree4      # after Ctrl-C",
  ],
};

/** What `train` will do, resolved from the flags (no I/O). */
export interface TrainPlan {
  /** The model to build (fresh runs only). */
  config?: SaeConfig;
  /** Checkpoint folder to resume. */
  resume?: string;
  /** Dataset folder; undefined: the built-in synthetic dataset. */
  data?: string;
  out?: string;
  batch?: number;
  maxTokens?: number;
  logEvery: number;
  checkpointEvery: number;
  engine?: EngineKind;
  reallocation: boolean;
  overwrite: boolean;
  quiet: boolean;
}

function num(flags: ParsedFlags, name: string): number | undefined {
  return flags[name] as number | undefined;
}

function positiveInt(flags: ParsedFlags, name: string, min = 1): number | undefined {
  const v = num(flags, name);
  if (v !== undefined && !(Number.isInteger(v) && v >= min)) {
    throw new UsageError(`train: --${name} must be an integer ≥ ${min}, got ${v}`);
  }
  return v;
}

/** Resolve the flags into a plan; throws UsageError/ArborError naming the flag. */
export function parseTrainArgs(flags: ParsedFlags): TrainPlan {
  const engine = flags.engine as string | undefined;
  if (engine !== undefined && engine !== "gpu" && engine !== "reference") {
    throw new UsageError(`train: --engine must be gpu or reference, got "${engine}"`);
  }
  const resume = flags.resume as string | undefined;
  const data = flags.data as string | undefined;
  const plan: TrainPlan = {
    data,
    resume,
    out: (flags.out as string | undefined) ?? resume ?? (data === undefined ? DEMO.out : undefined),
    batch: positiveInt(flags, "batch"),
    maxTokens: positiveInt(flags, "max-tokens"),
    logEvery: positiveInt(flags, "log-every")!,
    checkpointEvery: positiveInt(flags, "checkpoint-every", 0)!,
    engine: engine as EngineKind | undefined,
    reallocation: flags.reallocation !== false,
    overwrite: Boolean(flags.overwrite),
    quiet: Boolean(flags.quiet),
  };
  if (plan.out === undefined) {
    throw new UsageError("train: --out is required with --data (the run's output folder)");
  }
  if (resume !== undefined) {
    const given = MODEL_FLAGS.filter((f) => flags[f] !== undefined);
    if (given.length) {
      throw new UsageError(
        `train: --${
          given[0]
        } cannot be changed when resuming; the model comes from ${resume} (drop the flag)`,
      );
    }
    return plan;
  }
  plan.batch ??= data === undefined ? DEMO.batch : DEFAULT_BATCH;
  plan.config = modelConfig(flags, data === undefined);
  return plan;
}

/** Flags a --preset sets (giving one of them too is ambiguous). */
const PRESET_FLAGS = ["arch", "k", "n-features", "layers", "k-per-layer", "aux-alpha"];

/** The SaeConfig from the model flags (dIn is filled in from the data later; 1 as a placeholder). */
function modelConfig(flags: ParsedFlags, demo: boolean): SaeConfig {
  const presetName = flags.preset as string | undefined;
  if (presetName !== undefined) {
    const clash = PRESET_FLAGS.find((f) => flags[f] !== undefined);
    if (clash) {
      throw new UsageError(
        `train: --${clash} conflicts with --preset (the preset sets it); drop one`,
      );
    }
    const p = getPreset(presetName);
    return makeConfig({
      arch: p.arch,
      dIn: 1,
      layers: p.layers,
      k: p.k,
      kPerLayer: p.kPerLayer,
      auxAlpha: p.auxAlpha,
      auxK: positiveInt(flags, "aux-k", 0),
      deadTokens: positiveInt(flags, "dead-tokens"),
      lr: num(flags, "lr"),
      seed: positiveInt(flags, "seed", 0),
    }, `--preset ${presetName}`);
  }
  const arch = (flags.arch as string | undefined) ?? DEMO.arch;
  if (!SAE_ARCHS.includes(arch as SaeArch)) {
    throw new UsageError(`train: --arch must be one of ${SAE_ARCHS.join(", ")}, got "${arch}"`);
  }
  const a = arch as SaeArch;
  const nFeatures = positiveInt(flags, "n-features");
  let layers = flags.layers as number[] | undefined;
  let kPerLayer = flags["k-per-layer"] as number[] | undefined;
  if (a === "tree") {
    if (demo) {
      layers ??= DEMO.layers.tree;
      kPerLayer ??= layers === DEMO.layers.tree ? DEMO.kPerLayer : undefined;
    }
    if (!layers || !kPerLayer) {
      throw new UsageError(
        "train: --arch tree needs --layers and --k-per-layer (e.g. --layers 1536,3072,9216,10752 --k-per-layer 21,5,4,2)",
      );
    }
    if (flags.k !== undefined) {
      throw new UsageError(
        "train: --k is for topk/batchtopk/matryoshka; a tree uses --k-per-layer",
      );
    }
  } else {
    if (kPerLayer) throw new UsageError(`train: --k-per-layer is for --arch tree; ${a} uses --k`);
    if (a === "matryoshka") {
      layers ??= demo && nFeatures === undefined ? DEMO.layers.matryoshka : undefined;
      if (!layers) {
        throw new UsageError("train: --arch matryoshka needs --layers (the nested group sizes)");
      }
    } else {
      if (layers && layers.length !== 1) {
        throw new UsageError(
          `train: --arch ${a} has one layer; give --n-features (or a single --layers value)`,
        );
      }
      layers ??= nFeatures !== undefined ? [nFeatures] : demo ? DEMO.layers.flat : undefined;
      if (!layers) {
        throw new UsageError(`train: --arch ${a} needs --n-features (the dictionary size)`);
      }
    }
  }
  const sum = layers.reduce((s, v) => s + v, 0);
  if (nFeatures !== undefined && nFeatures !== sum) {
    throw new UsageError(
      `train: --layers [${layers}] sum to ${sum} but --n-features is ${nFeatures}; make them agree`,
    );
  }
  return makeConfig({
    arch: a,
    dIn: 1,
    layers,
    k: a === "tree" ? undefined : positiveInt(flags, "k") ?? (demo ? DEMO.k : DEFAULT_K),
    kPerLayer: a === "tree" ? kPerLayer : [],
    auxK: positiveInt(flags, "aux-k", 0),
    auxAlpha: flags["aux-alpha"] as number[] | undefined,
    deadTokens: positiveInt(flags, "dead-tokens") ?? (demo ? DEMO.deadTokens : undefined),
    lr: num(flags, "lr") ?? (demo ? DEMO.lr : undefined),
    seed: positiveInt(flags, "seed", 0),
  }, "train flags");
}

/** Run `train`: resolve the data and model, then the training loop with SIGINT → checkpoint. */
export async function runTrain(
  plan: TrainPlan,
  say: (line: string) => void = console.log,
): Promise<number> {
  const out = plan.out!;
  const info: CheckpointInfo = {};
  let config = plan.config;
  let state: SaeState | undefined;
  let progress: TrainerProgress | undefined;
  let data = plan.data;
  if (plan.resume !== undefined) {
    const ck = await loadCheckpoint(plan.resume);
    ({ config, state, progress } = ck);
    if (plan.batch !== undefined && plan.batch !== progress.batchSize) {
      throw new UsageError(
        `train: --batch ${plan.batch} differs from the checkpoint's ${progress.batchSize}; drop --batch`,
      );
    }
    const before = await readCheckpointInfo(plan.resume);
    data ??= typeof before.data === "string" && before.data !== "" ? before.data : undefined;
    if (data === undefined) {
      throw new UsageError(`train: --resume ${plan.resume} needs --data (the run's dataset)`);
    }
  } else if (await hasCheckpoint(out) && !plan.overwrite) {
    throw new ArborError(
      `--out ${out} already holds a checkpoint; continue it with --resume ${out}, pick another folder, or pass --overwrite`,
    );
  }
  if (data === undefined) {
    if (!plan.quiet) {
      say("no --data: using the built-in synthetic hierarchy (generated once into the cache)");
    }
    data = (await ensureDefaultDataset()).dir;
  }
  info.data = data;
  const batch = progress?.batchSize ?? plan.batch!;
  const source = await storeSource(data, {
    batchSize: batch,
    seed: config!.seed,
    expectDIn: state ? config!.dIn : undefined,
    cursor: progress?.cursor ?? undefined,
  });
  const hook = source.provenance.hook;
  if (typeof hook === "string") info.hook_name = hook;
  try {
    if (!state) config = makeConfig({ ...config!, dIn: source.dIn }, "train flags");
    const demoTokens = plan.data === undefined && !plan.resume ? DEMO.maxTokens : undefined;
    const maxTokens = plan.maxTokens ?? progress?.maxTokens ?? demoTokens ?? source.totalTokens;
    await ensureWritableDir(out);
    if (!plan.resume && plan.overwrite) await Deno.remove(`${out}/${METRICS_FILE}`).catch(() => {});
    const engine = await createEngine(plan.engine, config!, state, say);
    try {
      const hooks: TrainerHook[] = [];
      const tree = plan.reallocation
        ? treeTrainerHook(config!, {
          totalSteps: Math.ceil(maxTokens / batch),
          batchTokens: batch,
        })
        : null;
      if (tree) hooks.push(tree);
      if (!plan.quiet) {
        say(`${engine.description}; data ${data} (d_in ${config!.dIn}); output ${out}`);
      }
      const ctl = new AbortController();
      const onInt = () => ctl.abort();
      Deno.addSignalListener("SIGINT", onInt);
      try {
        const r = await train({
          engine,
          source,
          outDir: out,
          batchSize: batch,
          maxTokens,
          logEvery: plan.logEvery,
          checkpointEvery: plan.checkpointEvery,
          hooks,
          info,
          signal: ctl.signal,
          progress,
          progressSink: plan.quiet ? null : undefined,
        });
        const last = r.last
          ? `: loss ${r.last.loss.toPrecision(4)}, fvu ${r.last.fvu.toPrecision(3)}, l0 ${
            r.last.l0.toFixed(1)
          }`
          : "";
        if (r.interrupted) {
          say(
            `interrupted at step ${r.steps}; checkpoint saved in ${out}; continue with --resume ${out}`,
          );
          return 130;
        }
        if (!plan.quiet) {
          say(`done: ${r.steps} steps, ${r.tokensSeen} tokens${last}; checkpoint in ${out}`);
        }
        return 0;
      } finally {
        Deno.removeSignalListener("SIGINT", onInt);
      }
    } finally {
      engine.destroy();
    }
  } finally {
    await source.close();
  }
}

async function hasCheckpoint(dir: string): Promise<boolean> {
  try {
    await Deno.stat(`${dir}/${TRAINER_JSON_FILE}`);
    return true;
  } catch {
    return false;
  }
}

/** `train`: parse, then run. */
export const command: Command = {
  spec,
  run({ flags }) {
    return runTrain(parseTrainArgs(flags));
  },
};
