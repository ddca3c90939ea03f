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
import { workerStoreSource } from "../lib/train/worker_source.ts";
import {
  type CheckpointInfo,
  loadCheckpoint,
  readCheckpointInfo,
  TRAINER_JSON_FILE,
  type TrainerProgress,
} from "../lib/train/checkpoint.ts";
import { createEngine, type EngineKind } from "../lib/train/engine_factory.ts";
import {
  DEFAULT_STEPS_AHEAD,
  ensureWritableDir,
  METRICS_FILE,
  train,
  type TrainerHook,
} from "../lib/train/trainer.ts";
import { treeTrainerHook } from "../lib/tree/trainer_hook.ts";
import { getPreset, PRESET_NAMES } from "../lib/tree/presets.ts";
import { ensureDefaultDataset } from "../lib/synth/default.ts";
import { ALLOCATION_FLAGS, allocationOptionsFromFlags } from "./reallocate.ts";
import {
  compareConfig,
  type CompareSettings,
  DEMO_SETTINGS,
  formatTable,
  runComparison,
  SUMMARY_FILE,
} from "../lib/demo/compare.ts";
import { ActivationReader } from "../lib/store/reader.ts";
import { defaultAuxAlpha, TREE_INITS, type TreeInit } from "../lib/sae/config.ts";

/** Rows per batch (paper App. C trains with batches of 4096 tokens). */
const DEFAULT_BATCH = 4096;
/** Active features per token for topk / batchtopk / matryoshka (paper Table 1's L0 = 32 setting). */
const DEFAULT_K = 32;

/**
 * `train` with no --data: the built-in synthetic hierarchy (lib/synth/default.ts: 6 parents ×
 * 4 children, d_in = 64, 200k tokens) and the demo's model (lib/demo/compare.ts DEMO_SETTINGS:
 * sizes, dead threshold and schedule scaled to a run of ~600 steps). By default the demo also
 * trains TopK and Matryoshka and prints the ground-truth comparison (--no-compare: tree only).
 */
const DEMO = {
  out: "runs/demo",
  arch: "tree" as SaeArch,
  layers: {
    tree: DEMO_SETTINGS.layers,
    matryoshka: DEMO_SETTINGS.layers,
    flat: [DEMO_SETTINGS.layers.reduce((a, b) => a + b, 0)],
  },
  kPerLayer: DEMO_SETTINGS.kPerLayer,
  k: DEMO_SETTINGS.kPerLayer.reduce((a, b) => a + b, 0),
  batch: DEMO_SETTINGS.batch,
  lr: DEMO_SETTINGS.lr,
  deadTokens: DEMO_SETTINGS.deadTokens,
  auxK: DEMO_SETTINGS.auxK,
  maxTokens: DEMO_SETTINGS.maxTokens,
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
  "init-tree",
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
    "init-tree": {
      type: "string",
      help: `tree: initial allocation: ${TREE_INITS.join(" | ")} (balanced: equal children per ` +
        "earlier feature, none at the root; random: uniform parents incl. the root) (default: balanced)",
    },
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
    "steps-ahead": {
      type: "int",
      default: DEFAULT_STEPS_AHEAD,
      help:
        "GPU engine: steps submitted before the current one's statistics are in (0: one at a time; same weights)",
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
    ...ALLOCATION_FLAGS,
    compare: {
      type: "boolean",
      help:
        "also train TopK and Matryoshka of the Tree SAE's size and L0 on the same data, score " +
        "all three (ground truth when the data has truth.json) and print a table " +
        "(default: on with no --data; --no-compare: the Tree SAE only)",
    },
    overwrite: { type: "boolean", help: "replace a checkpoint already in --out" },
  },
  examples: [
    "deno run -A cli/main.ts train                      # demo: Tree SAE vs TopK vs Matryoshka on the built-in synthetic hierarchy",
    "deno run -A cli/main.ts train --no-compare         # demo, Tree SAE only",
    "deno run -A cli/main.ts train --data runs/synth --out runs/cmp --compare --layers 6,24 --k-per-layer 2,2",
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
  stepsAhead: number;
  engine?: EngineKind;
  /** The parsed flags (dynamic-allocation options are resolved once the run length is known). */
  flags: ParsedFlags;
  /** Train and score tree, topk and matryoshka (settings; maxTokens 0 = one pass). */
  compare?: CompareSettings;
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
    stepsAhead: positiveInt(flags, "steps-ahead", 0)!,
    engine: engine as EngineKind | undefined,
    flags,
    overwrite: Boolean(flags.overwrite),
    quiet: Boolean(flags.quiet),
  };
  if (plan.out === undefined) {
    throw new UsageError("train: --out is required with --data (the run's output folder)");
  }
  const compare = (flags.compare as boolean | undefined) ?? (data === undefined && !resume);
  if (compare) {
    if (resume !== undefined) {
      throw new UsageError("train: --compare cannot be combined with --resume; drop one");
    }
    plan.compare = compareSettings(flags, data === undefined);
    return plan;
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

/** Rows the comparison scores each SAE on (from the start of the dataset). */
const COMPARE_EVAL_TOKENS = 50_000;

/** Settings of `--compare` from the flags (the demo's defaults with no --data). */
function compareSettings(flags: ParsedFlags, demo: boolean): CompareSettings {
  const base = demo ? DEMO_SETTINGS : undefined;
  for (const f of ["arch", "k", "n-features"]) {
    if (flags[f] !== undefined) {
      throw new UsageError(
        `train: --${f} does not apply to --compare (it trains tree, topk and matryoshka from the ` +
          "tree's --layers and --k-per-layer); drop it or pass --no-compare",
      );
    }
  }
  const presetName = flags.preset as string | undefined;
  const preset = presetName === undefined ? undefined : getPreset(presetName);
  if (preset && preset.arch !== "tree") {
    throw new UsageError(
      `train: --compare needs a tree preset (it derives the baselines from it); ${presetName} is ${preset.arch}`,
    );
  }
  if (preset && (flags.layers !== undefined || flags["k-per-layer"] !== undefined)) {
    throw new UsageError("train: --layers/--k-per-layer conflict with --preset; drop one");
  }
  const layers = (flags.layers as number[] | undefined) ?? preset?.layers ?? base?.layers;
  const kPerLayer = (flags["k-per-layer"] as number[] | undefined) ?? preset?.kPerLayer ??
    base?.kPerLayer;
  if (!layers || !kPerLayer) {
    throw new UsageError(
      "train: --compare needs the Tree SAE's --layers and --k-per-layer (or a tree --preset)",
    );
  }
  const s: CompareSettings = {
    layers,
    kPerLayer,
    lr: num(flags, "lr") ?? base?.lr ?? DEFAULT_LR,
    batch: positiveInt(flags, "batch") ?? base?.batch ?? DEFAULT_BATCH,
    maxTokens: positiveInt(flags, "max-tokens") ?? base?.maxTokens ?? 0,
    deadTokens: positiveInt(flags, "dead-tokens") ?? base?.deadTokens ?? DEFAULT_DEAD_TOKENS,
    auxK: positiveInt(flags, "aux-k", 0) ?? base?.auxK ?? DEFAULT_AUX_K,
    auxAlpha: (flags["aux-alpha"] as number[] | undefined) ?? preset?.auxAlpha ??
      (base && base.layers.length === layers.length ? base.auxAlpha : undefined) ??
      defaultAuxAlpha("tree", layers.length),
    seed: positiveInt(flags, "seed", 0) ?? 0,
    initTree: initTreeFlag(flags) ?? base?.initTree ?? "balanced",
    evalTokens: base?.evalTokens ?? COMPARE_EVAL_TOKENS,
  };
  for (const arch of ["tree", "topk", "matryoshka"] as const) {
    compareConfig(arch, s, 1); // validates now, naming the bad field
  }
  return s;
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
      initTree: p.arch === "tree" ? initTreeFlag(flags) : undefined,
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
    if (flags["init-tree"] !== undefined) {
      throw new UsageError(`train: --init-tree is for --arch tree; ${a} has no tree`);
    }
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
    auxK: positiveInt(flags, "aux-k", 0) ?? (demo ? DEMO.auxK : undefined),
    auxAlpha: (flags["aux-alpha"] as number[] | undefined) ??
      (demo && a === "tree" && layers === DEMO.layers.tree ? DEMO_SETTINGS.auxAlpha : undefined),
    deadTokens: positiveInt(flags, "dead-tokens") ?? (demo ? DEMO.deadTokens : undefined),
    lr: num(flags, "lr") ?? (demo ? DEMO.lr : undefined),
    seed: positiveInt(flags, "seed", 0),
    initTree: a === "tree" ? initTreeFlag(flags) : undefined,
  }, "train flags");
}

/** --init-tree, checked (undefined: the default). */
function initTreeFlag(flags: ParsedFlags): TreeInit | undefined {
  const v = flags["init-tree"] as string | undefined;
  if (v !== undefined && !TREE_INITS.includes(v as TreeInit)) {
    throw new UsageError(`train: --init-tree must be ${TREE_INITS.join(" or ")}, got "${v}"`);
  }
  return v as TreeInit | undefined;
}

/** Run `train`: resolve the data and model, then the training loop with SIGINT → checkpoint. */
export async function runTrain(
  plan: TrainPlan,
  say: (line: string) => void = console.log,
): Promise<number> {
  if (plan.compare) return await runCompare(plan, plan.compare, say);
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
  // Read ahead on another thread: the GPU engine's steps are shorter than reading a batch.
  const source = await workerStoreSource(data, {
    batchSize: batch,
    seed: config!.seed,
    expectDIn: state ? config!.dIn : undefined,
    cursor: progress?.cursor ?? undefined,
    notice: say,
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
      const tree = treeTrainerHook(
        config!,
        allocationOptionsFromFlags(plan.flags, Math.ceil(maxTokens / batch), batch),
      );
      if (tree) hooks.push(tree);
      if (!plan.quiet) {
        say(`${engine.description}; data ${data} (d_in ${config!.dIn}); output ${out}`);
        // LLVM compiles llvmpipe's big unrolled kernels slowly (the 64-wide GEMM: 30 s – 2 min).
        if (/\bsoftware\b/.test(engine.description)) {
          say(
            "the first step compiles the GPU kernels: a minute or more on a software adapter, " +
              "seconds once Mesa's shader cache holds them",
          );
        }
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
          stepsAhead: plan.stepsAhead,
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
        // The result line prints even with --quiet, which hides only progress and notices.
        say(`done: ${r.steps} steps, ${r.tokensSeen} tokens${last}; checkpoint in ${out}`);
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

/** `train --compare` (and the demo): tree, topk and matryoshka on one dataset, then the table. */
async function runCompare(
  plan: TrainPlan,
  settings: CompareSettings,
  say: (line: string) => void,
): Promise<number> {
  const out = plan.out!;
  const demo = plan.data === undefined;
  const archs = ["tree", "topk", "matryoshka"];
  const occupied = [];
  for (const a of archs) if (await hasCheckpoint(`${out}/${a}`)) occupied.push(`${out}/${a}`);
  if (occupied.length && !plan.overwrite && !(demo && plan.flags.out === undefined)) {
    throw new ArborError(
      `--out ${out}: ${
        occupied.join(", ")
      } already hold checkpoints; pick another folder or pass --overwrite`,
    );
  }
  let data = plan.data;
  if (data === undefined) {
    if (!plan.quiet) {
      say("no --data: the built-in synthetic hierarchy (generated once into the cache)");
    }
    const t0 = performance.now();
    const ds = await ensureDefaultDataset();
    data = ds.dir;
    if (!plan.quiet) {
      say(
        ds.generated
          ? `generated ${data} in ${((performance.now() - t0) / 1000).toFixed(1)} s`
          : `reusing ${data}`,
      );
    }
  }
  const reader = await ActivationReader.open(data, {});
  const maxTokens = settings.maxTokens || reader.totalTokens;
  const steps = Math.ceil(maxTokens / settings.batch);
  const { totalSteps: _t, batchTokens: _b, ...allocation } = allocationOptionsFromFlags(
    plan.flags,
    steps,
    settings.batch,
  );
  const s: CompareSettings = { ...settings, maxTokens, allocation };
  if (!plan.quiet) {
    say(
      `training a Tree SAE (layers [${s.layers}], k per layer [${s.kPerLayer}]) and TopK and ` +
        `Matryoshka of the same size and L0 on ${maxTokens} tokens each; output ${out}`,
    );
  }
  const t0 = performance.now();
  const summary = await runComparison({
    data,
    out,
    settings: s,
    ...(plan.engine ? { engine: plan.engine } : {}),
    say: plan.quiet ? () => {} : say,
    ...(plan.quiet ? { progressSink: null } : {}),
  });
  say("\n" + formatTable(summary.rows));
  const truth = summary.rows.some((r) => r.parentAccuracy !== null);
  if (!truth) say("(no truth.json in the data: ground-truth columns are empty)");
  say(
    `\n${summary.engine}; ${((performance.now() - t0) / 1000).toFixed(0)} s; checkpoints in ` +
      `${out}/{${archs.join(",")}}, summary in ${out}/${SUMMARY_FILE}`,
  );
  return 0;
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
