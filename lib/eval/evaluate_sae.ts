/**
 * The evaluation pipeline of one SAE (DESIGN §6): encode and reconstruct the evaluation
 * tokens with an engine, then run the requested metrics over the codes. Every random
 * choice (parent sampling, probe shuffles) comes from `seed`, so the same inputs give
 * the same numbers.
 */
import type { Gpu } from "../gpu/device.ts";
import type { SaeEngine } from "../sae/engine.ts";
import type { SaeConfig } from "../sae/config.ts";
import { numFeatures } from "../sae/config.ts";
import { ReconstructionAccumulator, type ReconstructionMetrics } from "./reconstruction.ts";
import {
  concatCodes,
  FeatureStats,
  FIRE_THRESHOLD,
  type SparseCodes,
  UNUSED_SLOT,
} from "./sparse_codes.ts";
import { coactivationStats } from "./coactivation.ts";
import { coverageScore, MCS_VARIANTS, topChildren } from "./coverage.ts";
import {
  DEFAULT_HIERARCHY,
  densestFeatures,
  hierarchyMetric,
  type HierarchyOptions,
  type ProcedureResult,
  sampleDistinct,
} from "./probes.ts";
import { treeChildren } from "./tree_children.ts";
import { CooccurrenceAccumulator, type CooccurrenceResult } from "./cooccurrence.ts";
import { composition, COMPOSITION_BLOCK } from "./composition.ts";
import type { DownstreamResult } from "./downstream.ts";
import type { AbsorptionParams } from "./first_letter_model.ts";
import type { FirstLetterResult } from "./first_letter.ts";

/** Metrics `evaluate` computes from activations alone. */
export const ACTIVATION_METRICS = [
  "reconstruction",
  "coverage",
  "hierarchy",
  "cooccurrence",
  "composition",
] as const;
/** Metrics that need the language model (issue #7 items 5–6). */
export const MODEL_METRICS = ["downstream", "absorption"] as const;
/** Any metric name. */
export type MetricName = (typeof ACTIVATION_METRICS)[number] | (typeof MODEL_METRICS)[number];

/** Tokens whose activations the probes of the hierarchy metric train on, by default. */
export const DEFAULT_PROBE_TOKENS = 16384;
/** Children per parent summarised by the coverage metric (paper §5.2: top-5). */
export const COVERAGE_TOP = 5;

/** An SAE ready to evaluate. */
export interface SaeUnderTest {
  config: SaeConfig;
  /** Decoder rows [n, d]. */
  decW: Float32Array;
  /** Tree parents per layer (data contract); [] for other architectures. */
  parents: Int32Array[];
  engine: SaeEngine;
}

/** Settings of one evaluation. */
export interface EvalSettings {
  metrics: MetricName[];
  seed: number;
  /** Rows per engine call. */
  batchSize: number;
  /** Rows the probes train on (the first ones). */
  probeTokens: number;
  /** Overrides of the hierarchy metric's defaults (nParents, minChildCount, probe, ...). */
  hierarchy: Partial<HierarchyOptions>;
}

/** Defaults of `evaluate`. */
export const DEFAULT_EVAL: EvalSettings = {
  metrics: [...ACTIVATION_METRICS],
  seed: 0,
  batchSize: 1024,
  probeTokens: DEFAULT_PROBE_TOKENS,
  hierarchy: {},
};

/** Coverage summary: MCS children of sampled dense parents, and the tree's own pairs. */
export interface CoverageResult {
  params: { nParents: number; denseRatio: number; top: number; seed: number };
  parents: number;
  /** Per MCS variant: mean over (parent, top child) pairs of the MCS score and of S_cov. */
  variants: Record<string, { pairs: number; meanMcs: number; meanCoverage: number }>;
  /** Tree SAE: mean S_cov over (parent, child) pairs of the tree where the child fired (1 by construction). */
  treeCoverage?: { pairs: number; meanCoverage: number };
}

/** Hierarchy result as stored (pair lists trimmed to summaries + pairs). */
export interface HierarchySummary {
  params: Omit<HierarchyOptions, "variant"> & { variant: string; probeTokens: number };
  parents: number;
  mcs: ProcedureResult;
  tree?: ProcedureResult;
}

/** Every metric computed for one SAE (absent keys were not requested). */
export interface MetricsRecord {
  tokens: number;
  reconstruction?: ReconstructionMetrics;
  coverage?: CoverageResult;
  hierarchy?: HierarchySummary;
  cooccurrence?: CooccurrenceResult & { params: { definition: string } };
  composition?: { meanMaxCosine: number; params: { block: number } };
  /** Language-model metrics (computed by the caller that holds the model; downstream.ts). */
  downstream?: DownstreamResult & { params: { model: string; hook: string; tokens: number } };
  /** First-letter absorption and splitting (computed by the caller that holds the model; first_letter_model.ts). */
  absorption?: FirstLetterResult & { params: AbsorptionParams };
}

function variantName(v: { binary: boolean; scaled: boolean }): string {
  return (v.binary ? "binary" : "continuous") + (v.scaled ? "_scaled" : "");
}

/** Tree pairs' S_cov over codes: for each fired child with a non-root parent, did the parent fire too? */
function treePairCoverage(codes: SparseCodes, config: SaeConfig, parents: Int32Array[]) {
  const n = numFeatures(config);
  const parentOf = new Int32Array(n).fill(-1);
  let off = 0;
  config.layers.forEach((s, l) => {
    for (let i = 0; i < s; i++) {
      if (l > 0 && parents[l][i] !== off) parentOf[off + i] = parents[l][i];
    }
    off += s;
  });
  const fired = new Float64Array(n), covered = new Float64Array(n);
  const rowSet = new Set<number>();
  for (let b = 0; b < codes.rows; b++) {
    rowSet.clear();
    for (let s = 0; s < codes.k; s++) {
      const f = codes.idx[b * codes.k + s];
      if (f !== UNUSED_SLOT && codes.val[b * codes.k + s] > FIRE_THRESHOLD) rowSet.add(f);
    }
    for (const f of rowSet) {
      if (parentOf[f] < 0) continue;
      fired[f]++;
      if (rowSet.has(parentOf[f])) covered[f]++;
    }
  }
  let pairs = 0, sum = 0;
  for (let f = 0; f < n; f++) {
    if (fired[f] > 0) {
      pairs++;
      sum += covered[f] / fired[f];
    }
  }
  return { pairs, meanCoverage: pairs ? sum / pairs : 0 };
}

function sliceCodes(c: SparseCodes, rows: number): SparseCodes {
  const r = Math.min(rows, c.rows);
  return { idx: c.idx.subarray(0, r * c.k), val: c.val.subarray(0, r * c.k), rows: r, k: c.k };
}

/** Evaluate one SAE on activations x [rows, d]. */
export async function evaluateSae(
  gpu: Gpu | null,
  sae: SaeUnderTest,
  data: { x: Float32Array; rows: number; d: number },
  settings: Partial<EvalSettings> = {},
): Promise<MetricsRecord> {
  const s: EvalSettings = { ...DEFAULT_EVAL, ...settings };
  const { config, decW, engine } = sae;
  const n = numFeatures(config);
  const d = config.dIn;
  if (data.d !== d) throw new RangeError(`evaluate: data d_in ${data.d} != SAE d_in ${d}`);
  const want = new Set(s.metrics);
  const isTree = config.arch === "tree";

  const recon = new ReconstructionAccumulator(d, n, { layerSizes: config.layers });
  const cooc = isTree && want.has("cooccurrence")
    ? new CooccurrenceAccumulator(config.layers, sae.parents)
    : null;
  const batches: SparseCodes[] = [];
  // Composition (and the caller's downstream metric) need no codes: skip encoding then.
  const needCodes = ["reconstruction", "coverage", "hierarchy", "cooccurrence"].some((m) =>
    want.has(m as MetricName)
  );
  for (let r0 = 0; needCodes && r0 < data.rows; r0 += s.batchSize) {
    const B = Math.min(s.batchSize, data.rows - r0);
    const x = data.x.subarray(r0 * d, (r0 + B) * d);
    const enc = await engine.encode(x, B);
    const codes: SparseCodes = { idx: enc.idx, val: enc.val, rows: B, k: enc.K };
    batches.push(codes);
    if (want.has("reconstruction")) recon.add(x, await engine.reconstruct(x, B), codes);
    cooc?.add(codes);
  }
  const out: MetricsRecord = { tokens: data.rows };
  if (want.has("reconstruction")) out.reconstruction = recon.result();
  const all = concatCodes(batches);
  const hopt: HierarchyOptions = { ...DEFAULT_HIERARCHY, seed: s.seed, ...s.hierarchy };

  if (want.has("coverage")) {
    const stats = new FeatureStats(n);
    stats.add(all);
    const parents = sampleDistinct(densestFeatures(stats, hopt.denseRatio), hopt.nParents, s.seed)
      .sort((a, b) => a - b);
    const co = await coactivationStats(gpu, batches, Uint32Array.from(parents), n);
    const variants: CoverageResult["variants"] = {};
    for (const [name, variant] of Object.entries(MCS_VARIANTS)) {
      let pairs = 0, mcs = 0, cov = 0;
      parents.forEach((_, pi) => {
        for (const c of topChildren(co, stats, pi, { variant, top: COVERAGE_TOP })) {
          pairs++;
          mcs += c.score;
          cov += coverageScore(co, stats, pi, c.child);
        }
      });
      variants[name] = {
        pairs,
        meanMcs: pairs ? mcs / pairs : 0,
        meanCoverage: pairs ? cov / pairs : 0,
      };
    }
    out.coverage = {
      params: {
        nParents: hopt.nParents,
        denseRatio: hopt.denseRatio,
        top: COVERAGE_TOP,
        seed: s.seed,
      },
      parents: parents.length,
      variants,
      ...(isTree ? { treeCoverage: treePairCoverage(all, config, sae.parents) } : {}),
    };
  }

  if (want.has("hierarchy")) {
    const rows = Math.min(s.probeTokens, data.rows);
    const h = await hierarchyMetric(gpu, {
      x: data.x.subarray(0, rows * d),
      codes: sliceCodes(all, rows),
      decW,
      n,
      d,
      ...(isTree ? { tree: treeChildren(config.layers, sae.parents) } : {}),
    }, hopt);
    out.hierarchy = {
      params: { ...h.options, variant: variantName(h.options.variant), probeTokens: rows },
      parents: h.parents.length,
      mcs: h.mcs,
      ...(h.tree ? { tree: h.tree } : {}),
    };
  }

  if (cooc) {
    out.cooccurrence = {
      ...cooc.result(),
      params: { definition: "mean IoU of sibling token sets, per layer ≥ 1, mean over layers" },
    };
  }
  if (want.has("composition")) {
    const r = await composition(gpu, decW, n, d);
    out.composition = { meanMaxCosine: r.meanMaxCosine, params: { block: COMPOSITION_BLOCK } };
  }
  return out;
}
