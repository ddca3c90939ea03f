/**
 * The demo comparison (issue #5): train a Tree SAE and, for comparison, TopK and Matryoshka SAEs
 * of the same dictionary size and L0 on one dataset, score each against the dataset's ground
 * truth (lib/eval/ground_truth.ts) and summarise them in one table.
 *
 * Each SAE is trained by the normal trainer (checkpoint + metrics.jsonl in `<out>/<arch>/`), then
 * its codes and reconstructions of the first `evalTokens` rows of the dataset (in file order, as
 * the truth's activity record) give FVU, L0 and dead % (ReconstructionAccumulator), and, when the
 * dataset has truth.json, recovered %, parent accuracy and absorption. The Tree SAE's parents
 * are its tree; the flat SAEs' are the top-coverage latent (ground_truth.ts).
 */
import { join } from "node:path";
import { ArborError } from "../errors.ts";
import { makeConfig, numFeatures, type SaeConfig, type TreeInit } from "../sae/config.ts";
import type { SaeEngine, SaeState } from "../sae/engine.ts";
import { layerOffsets } from "../sae/config.ts";
import { storeSource } from "../train/batch_source.ts";
import { createEngine, type EngineKind } from "../train/engine_factory.ts";
import { type ProgressSink, train, type TrainerHook } from "../train/trainer.ts";
import { type TreeAllocatorOptions, treeTrainerHook } from "../tree/trainer_hook.ts";
import { ActivationReader, batchF32 } from "../store/reader.ts";
import { concatCodes, type SparseCodes } from "../eval/sparse_codes.ts";
import { ReconstructionAccumulator } from "../eval/reconstruction.ts";
import {
  type GroundTruthScores,
  learnedParentsFromTree,
  scoreAgainstDataset,
} from "../eval/ground_truth.ts";

/** Architectures the comparison trains, in table order. */
export const COMPARE_ARCHS = ["tree", "topk", "matryoshka"] as const;
/** One of COMPARE_ARCHS. */
export type CompareArch = (typeof COMPARE_ARCHS)[number];

/** Model and run settings shared by the three SAEs (the tree's layers define n and L0). */
export interface CompareSettings {
  /** Tree privilege layer sizes; Matryoshka uses them as its nested groups, TopK their sum. */
  layers: number[];
  /** Tree k per layer; TopK and Matryoshka use k = Σ k_l (equal L0). */
  kPerLayer: number[];
  /** Adam learning rate. */
  lr: number;
  /** Rows per batch. */
  batch: number;
  /** Tokens each SAE trains on. */
  maxTokens: number;
  /** A feature is dead after this many tokens without firing (AuxK, reallocation). */
  deadTokens: number;
  /** AuxK latents per token. */
  auxK: number;
  /** Tree AuxK α per layer (baselines: the first value). */
  auxAlpha: number[];
  /** Seed of initialisation and data order. */
  seed: number;
  /** Tree SAE initial allocation (default balanced, SaeConfig.initTree). */
  initTree?: TreeInit;
  /** Rows of the dataset (from its start) the SAEs are scored on. */
  evalTokens: number;
  /** Tree dynamic allocation (schedule etc.) beyond totalSteps/batchTokens; null: off. */
  allocation?: Omit<TreeAllocatorOptions, "totalSteps" | "batchTokens"> | null;
}

/** Options of `runComparison`. */
export interface CompareOptions {
  /** Dataset folder (activation store; truth.json enables the ground-truth columns). */
  data: string;
  /** Output folder: one sub-folder per architecture plus summary.json. */
  out: string;
  /** Which architectures (default all three). */
  archs?: readonly CompareArch[];
  settings: CompareSettings;
  /** Engine choice (default: GPU, reference with a notice when WebGPU fails). */
  engine?: EngineKind;
  /** Console lines (default console.log). */
  say?: (line: string) => void;
  /** Trainer progress lines (default stdout; null: none). */
  progressSink?: ProgressSink | null;
  /** Print reallocation events (default true). */
  logAllocation?: boolean;
}

/** One row of the comparison. */
export interface CompareRow {
  arch: CompareArch;
  /** Dictionary size n. */
  features: number;
  /** Fraction of variance unexplained on the evaluated tokens (1 − pooled R²). */
  fvu: number;
  /** Mean active features per evaluated token. */
  l0: number;
  /** Fraction of features that never fired on the evaluated tokens. */
  dead: number;
  /** Ground truth (null without truth.json). */
  recovered: number | null;
  meanCosine: number | null;
  parentAccuracy: number | null;
  parentSource: GroundTruthScores["parentSource"];
  absorption: number | null;
  /** Training wall time in seconds. */
  trainSeconds: number;
  /** Checkpoint folder. */
  dir: string;
}

/** What `runComparison` returns (and writes to `<out>/summary.json`). */
export interface CompareSummary {
  data: string;
  engine: string;
  settings: CompareSettings;
  rows: CompareRow[];
}

/**
 * The demo's settings for the default synthetic dataset (lib/synth/default.ts: 6 parents × 4
 * children, d_in = 64). One latent per true feature (6 + 24) and k = 2 per layer: the ~1.35
 * parents and ~0.8 children active per token fit, but a token with three parents does not, so
 * the flat SAEs (k = 4) gain from merging a parent into its child (absorption). The initial
 * tree is balanced (4 children per layer-0 latent, none at the root; see SaeConfig.initTree).
 * The dead threshold and the reallocation schedule scale with the run (≈ 600 steps; the
 * paper's 10M-token threshold would never fire): a feature silent for 5,000 tokens (≈ 5
 * batches) is dead. AuxK runs on both layers (the paper's App. C uses layer 0 only; here a
 * reallocated dead child needs the gradient to revive under its new parent; layer 0 only
 * scores the same on this data). lr 3e-3, batch 1024: the best of the settings tried.
 */
export const DEMO_SETTINGS: CompareSettings = {
  layers: [6, 24],
  kPerLayer: [2, 2],
  lr: 3e-3,
  batch: 1024,
  maxTokens: 600_000,
  deadTokens: 5_000,
  auxK: 32,
  auxAlpha: [1 / 32, 1 / 32],
  seed: 0,
  initTree: "balanced",
  evalTokens: 50_000,
  allocation: {},
};

/** The summary file written next to the checkpoints. */
export const SUMMARY_FILE = "summary.json";

/** SaeConfig of one architecture of the comparison (dIn from the data). */
export function compareConfig(arch: CompareArch, s: CompareSettings, dIn: number): SaeConfig {
  const k = s.kPerLayer.reduce((a, b) => a + b, 0);
  const n = s.layers.reduce((a, b) => a + b, 0);
  const common = { dIn, lr: s.lr, deadTokens: s.deadTokens, auxK: s.auxK, seed: s.seed };
  const where = `demo ${arch} config`;
  switch (arch) {
    case "tree":
      return makeConfig({
        ...common,
        arch,
        layers: s.layers,
        kPerLayer: s.kPerLayer,
        auxAlpha: s.auxAlpha,
        initTree: s.initTree,
      }, where);
    case "matryoshka":
      return makeConfig({ ...common, arch, layers: s.layers, k, auxAlpha: [s.auxAlpha[0]] }, where);
    case "topk":
      return makeConfig({ ...common, arch, layers: [n], k, auxAlpha: [s.auxAlpha[0]] }, where);
  }
}

/** Train, checkpoint and score every requested architecture; writes summary.json. */
export async function runComparison(o: CompareOptions): Promise<CompareSummary> {
  const say = o.say ?? console.log;
  const archs = o.archs ?? COMPARE_ARCHS;
  const s = o.settings;
  const evalData = await readEvalRows(o.data, s.evalTokens);
  const rows: CompareRow[] = [];
  let engineName = "";
  for (const arch of archs) {
    const dir = join(o.out, arch);
    const config = compareConfig(arch, s, evalData.dIn);
    say(`\n== ${arch}: n = ${numFeatures(config)}, ${describeK(config)} ==`);
    const engine = await createEngine(o.engine, config, undefined, say);
    engineName = engine.description;
    try {
      const t0 = performance.now();
      await trainOne(o, engine, dir);
      const trainSeconds = (performance.now() - t0) / 1000;
      const state = await engine.readState();
      const row = await scoreOne(arch, engine, state, o.data, evalData, dir);
      row.trainSeconds = trainSeconds;
      rows.push(row);
      say(`${arch}: ${rowLine(row)} (trained in ${trainSeconds.toFixed(0)} s)`);
    } finally {
      engine.destroy();
    }
  }
  const summary: CompareSummary = { data: o.data, engine: engineName, settings: s, rows };
  await Deno.mkdir(o.out, { recursive: true });
  await Deno.writeTextFile(join(o.out, SUMMARY_FILE), JSON.stringify(summary, null, 2) + "\n");
  return summary;
}

function describeK(c: SaeConfig): string {
  return c.arch === "tree"
    ? `layers [${c.layers}], k per layer [${c.kPerLayer}]`
    : c.arch === "matryoshka"
    ? `groups [${c.layers}], k ${c.k}`
    : `k ${c.k}`;
}

async function trainOne(o: CompareOptions, engine: SaeEngine, dir: string): Promise<void> {
  const s = o.settings;
  const config = engine.config;
  const source = await storeSource(o.data, { batchSize: s.batch, seed: s.seed });
  try {
    const hooks: TrainerHook[] = [];
    if (s.allocation !== null) {
      const say = o.say ?? console.log;
      const hook = treeTrainerHook(config, {
        ...s.allocation,
        totalSteps: Math.ceil(s.maxTokens / s.batch),
        batchTokens: s.batch,
        log: o.logAllocation === false ? null : say,
      });
      if (hook) hooks.push(hook);
    }
    await Deno.remove(join(dir, "metrics.jsonl")).catch(() => {});
    await train({
      engine,
      source,
      outDir: dir,
      batchSize: s.batch,
      maxTokens: s.maxTokens,
      logEvery: Math.max(1, Math.round(s.maxTokens / s.batch / 10)),
      checkpointEvery: 0,
      hooks,
      info: { data: o.data },
      ...(o.progressSink !== undefined ? { progressSink: o.progressSink } : {}),
    });
  } finally {
    await source.close();
  }
}

/** The first rows of a dataset, in file order. */
interface EvalRows {
  x: Float32Array;
  rows: number;
  dIn: number;
}

async function readEvalRows(dir: string, tokens: number): Promise<EvalRows> {
  const reader = await ActivationReader.open(dir, {});
  const d = reader.dIn;
  const rows = Math.min(tokens, reader.totalTokens);
  if (rows < 1) throw new ArborError(`${dir}: the dataset has no rows to evaluate on`);
  const stream = reader.batches({ batchSize: rows, order: "sequential", epochs: 1, tokens: false });
  try {
    const b = await stream.nextBatch();
    if (!b) throw new ArborError(`${dir}: the dataset has no rows to evaluate on`);
    const values = batchF32(b).slice();
    return { x: values, rows: b.rows, dIn: d };
  } finally {
    await stream.close();
  }
}

/** Rows per engine call while scoring. */
const SCORE_BATCH = 4096;

async function scoreOne(
  arch: CompareArch,
  engine: SaeEngine,
  state: SaeState,
  data: string,
  ev: EvalRows,
  dir: string,
): Promise<CompareRow> {
  const config = engine.config;
  const d = ev.dIn;
  const n = numFeatures(config);
  const acc = new ReconstructionAccumulator(d, n, { layerSizes: config.layers });
  const batches: SparseCodes[] = [];
  for (let r = 0; r < ev.rows; r += SCORE_BATCH) {
    const B = Math.min(SCORE_BATCH, ev.rows - r);
    const x = ev.x.subarray(r * d, (r + B) * d);
    const enc = await engine.encode(x, B);
    const codes: SparseCodes = { idx: enc.idx, val: enc.val, rows: B, k: enc.K };
    acc.add(x, await engine.reconstruct(x, B), codes);
    batches.push(codes);
  }
  const rec = acc.result();
  const learnedParents = config.arch === "tree"
    ? learnedParentsFromTree({
      offsets: layerOffsets(config).slice(0, config.layers.length),
      parents: state.parents,
    })
    : undefined;
  const gt = await scoreAgainstDataset(data, {
    decoder: state.decW,
    d,
    codes: concatCodes(batches),
    ...(learnedParents ? { learnedParents } : {}),
  });
  return {
    arch,
    features: n,
    fvu: 1 - rec.varianceExplained,
    l0: rec.l0,
    dead: rec.deadFraction,
    recovered: gt?.recovered ?? null,
    meanCosine: gt?.meanCosine ?? null,
    parentAccuracy: gt?.parentAccuracy ?? null,
    parentSource: gt?.parentSource ?? null,
    absorption: gt?.absorption ?? null,
    trainSeconds: 0,
    dir,
  };
}

function fmt(v: number | null, digits = 3): string {
  return v === null ? "—" : v.toFixed(digits);
}

function pct(v: number | null): string {
  return v === null ? "—" : `${(100 * v).toFixed(1)}%`;
}

function rowLine(r: CompareRow): string {
  return `FVU ${fmt(r.fvu)}, L0 ${r.l0.toFixed(2)}, dead ${pct(r.dead)}, recovered ${
    pct(r.recovered)
  }, parent accuracy ${fmt(r.parentAccuracy, 2)}, absorption ${fmt(r.absorption, 3)}`;
}

/** The comparison as a Markdown table, one row per architecture. */
export function formatTable(rows: CompareRow[]): string {
  const head = ["SAE", "n", "FVU", "L0", "dead %", "recovered %", "parent acc.", "absorption"];
  const body = rows.map((r) => [
    r.arch === "tree" ? "Tree SAE" : r.arch === "topk" ? "TopK" : "Matryoshka",
    String(r.features),
    fmt(r.fvu),
    r.l0.toFixed(2),
    pct(r.dead),
    pct(r.recovered),
    fmt(r.parentAccuracy, 2),
    fmt(r.absorption, 3),
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => (i === 0 ? c.padEnd(width[i]) : c.padStart(width[i]))).join(" | ") +
    " |";
  const rule = "|" +
    width.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|";
  return [line(head), rule, ...body.map(line)].join("\n");
}
