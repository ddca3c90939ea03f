/**
 * Evaluation result files: one JSON per SAE (schema "arbor-eval", versioned) holding the
 * SAE config, data provenance, every metric with its parameters and seed, and what was
 * not computed and why; plus the printed table and the side-by-side `--compare` table.
 * No timestamps: the same inputs give byte-identical files.
 */
import { DataError } from "../errors.ts";
import { VERSION } from "../version.ts";
import type { SaeConfig } from "../sae/config.ts";
import type { MetricsRecord } from "./evaluate_sae.ts";

/** Schema name of a result file. */
export const RESULT_SCHEMA = "arbor-eval";
/** Schema version; bump when a field changes meaning. */
export const RESULT_VERSION = 1;

/** One SAE's evaluation. */
export interface EvalResult {
  schema: typeof RESULT_SCHEMA;
  version: typeof RESULT_VERSION;
  arbor_version: string;
  /** Short name shown in tables (the checkpoint folder's name). */
  name: string;
  sae: { dir: string; config: SaeConfig; n: number };
  data: {
    dir: string;
    tokens_evaluated: number;
    total_tokens: number;
    dtype: string;
    d_in: number;
    has_tokens: boolean;
    provenance: Record<string, unknown>;
  };
  seed: number;
  metrics: MetricsRecord;
  /** Metrics requested or known but not computed, with the reason. */
  not_computed: Record<string, string>;
}

/** Assemble a result record (schema, version and Arbor version filled in). */
export function makeResult(
  fields: Omit<EvalResult, "schema" | "version" | "arbor_version">,
): EvalResult {
  return { schema: RESULT_SCHEMA, version: RESULT_VERSION, arbor_version: VERSION, ...fields };
}

/** Serialise a result (stable key order as built, 2-space indent, trailing newline). */
export function resultJson(r: EvalResult): string {
  return JSON.stringify(r, null, 2) + "\n";
}

/** Parse and check a result file's text; DataError naming `path` when it is not one. */
export function parseResult(text: string, path: string): EvalResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new DataError(
      `${path}: not JSON (${(e as Error).message}); pass result files written by evaluate --out`,
    );
  }
  const r = raw as Partial<EvalResult>;
  if (r?.schema !== RESULT_SCHEMA) {
    throw new DataError(
      `${path}: not an Arbor evaluation result (schema ${r?.schema}); pass files written by evaluate --out`,
    );
  }
  if (r.version !== RESULT_VERSION) {
    throw new DataError(
      `${path}: result schema version ${r.version}, this Arbor reads version ${RESULT_VERSION}; re-run evaluate`,
    );
  }
  return r as EvalResult;
}

type Getter = (r: EvalResult) => number | string | null | undefined;

function fmt(v: number | string | null | undefined): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "string") return v;
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1000 ? v.toFixed(1) : v.toPrecision(4);
}

/** Rows of the result table: label and value getter. */
const ROWS: [string, Getter][] = [
  ["arch", (r) => r.sae.config.arch],
  ["features n", (r) => r.sae.n],
  ["layers", (r) => r.sae.config.layers.join("/")],
  ["tokens evaluated", (r) => r.data.tokens_evaluated],
  ["mse (per element)", (r) => r.metrics.reconstruction?.mse],
  ["variance explained (pooled R²)", (r) => r.metrics.reconstruction?.varianceExplained],
  [
    "variance explained (token-centred)",
    (r) => r.metrics.reconstruction?.varianceExplainedTokenCentred,
  ],
  ["cosine", (r) => r.metrics.reconstruction?.cosine],
  ["L2 ratio", (r) => r.metrics.reconstruction?.l2Ratio],
  ["L0", (r) => r.metrics.reconstruction?.l0],
  ["L0 per layer", (r) => r.metrics.reconstruction?.l0PerLayer.map((v) => fmt(v)).join(" / ")],
  ["dead fraction", (r) => r.metrics.reconstruction?.deadFraction],
  ["dense fraction", (r) => r.metrics.reconstruction?.denseFraction],
  ["MCS top-5 (binary)", (r) => r.metrics.coverage?.variants.binary?.meanMcs],
  ["S_cov of MCS top-5", (r) => r.metrics.coverage?.variants.binary?.meanCoverage],
  ["S_cov of tree pairs", (r) => r.metrics.coverage?.treeCoverage?.meanCoverage],
  ["hierarchy (MCS)", (r) => r.metrics.hierarchy?.mcs.score],
  ["hierarchy pairs (MCS)", (r) => r.metrics.hierarchy?.mcs.pairs],
  ["mean S_res (MCS)", (r) => r.metrics.hierarchy?.mcs.meanSRes],
  ["hierarchy (tree)", (r) => r.metrics.hierarchy?.tree?.score],
  ["hierarchy pairs (tree)", (r) => r.metrics.hierarchy?.tree?.pairs],
  ["mean S_res (tree)", (r) => r.metrics.hierarchy?.tree?.meanSRes],
  ["sibling co-occurrence", (r) => r.metrics.cooccurrence?.rate],
  ["composition (mean max cos)", (r) => r.metrics.composition?.meanMaxCosine],
  ["CE clean", (r) => r.metrics.downstream?.cleanCe],
  ["CE with SAE spliced", (r) => r.metrics.downstream?.saeCe],
  ["CE zero-ablated", (r) => r.metrics.downstream?.zeroCe],
  ["CE loss recovered", (r) => r.metrics.downstream?.ceRecovered],
  ["KL to clean (nats/token)", (r) => r.metrics.downstream?.kl],
  ["absorption fraction (mean)", (r) => r.metrics.absorption?.meanAbsorptionFraction],
  ["full absorption rate (mean)", (r) => r.metrics.absorption?.meanFullAbsorptionRate],
  ["split features (mean)", (r) => r.metrics.absorption?.meanNumSplitFeatures],
  ["first letters evaluated", (r) => r.metrics.absorption?.lettersEvaluated],
];

/** Side-by-side table of several results (one column per SAE); one result gives the plain table. */
export function formatCompare(results: EvalResult[]): string {
  const header = ["metric", ...results.map((r) => r.name)];
  const body = ROWS.map(([label, get]) => [label, ...results.map((r) => fmt(get(r)))]);
  const notes = new Map<string, string>();
  for (const r of results) for (const [k, why] of Object.entries(r.not_computed)) notes.set(k, why);
  const table = [header, ...body];
  const widths = header.map((_, c) => Math.max(...table.map((row) => row[c].length)));
  const line = (row: string[]) =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  const lines = [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)];
  for (const [k, why] of notes) lines.push(`not computed: ${k} — ${why}`);
  return lines.join("\n");
}

/** The printed table of one result. */
export function formatTable(r: EvalResult): string {
  return formatCompare([r]);
}
