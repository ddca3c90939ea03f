/**
 * Encode the inspected rows with an SAE engine and gather what the views show about
 * every feature: firing counts and density (lib/eval FeatureStats), the top activating
 * rows, the most frequent tokens it fires on, a seeded reservoir sample of the rows it
 * fires on (for the §6.1 geometry plot and the activation histogram), sibling co-firing
 * (§6.3) and the Table 3 co-occurrence rate (lib/eval CooccurrenceAccumulator).
 */
import type { SaeEngine } from "../sae/engine.ts";
import {
  FeatureStats,
  FIRE_THRESHOLD,
  type SparseCodes,
  UNUSED_SLOT,
} from "../eval/sparse_codes.ts";
import { CooccurrenceAccumulator, type CooccurrenceResult } from "../eval/cooccurrence.ts";
import { Rng } from "../util/rng.ts";
import { TopExamples } from "./top_examples.ts";
import { SiblingPairs } from "./sibling_pairs.ts";
import type { FeatureTree } from "./structure.ts";
import type { InspectRows } from "./data_source.ts";

/** Top examples kept per feature. */
export const TOP_EXAMPLES = 20;
/** Rows sampled per feature for the geometry plot and histogram. */
export const SAMPLES_PER_FEATURE = 64;

/** Everything `inspect` knows about the features from the data. */
export interface FeatureProfile {
  /** Tokens encoded. */
  tokens: number;
  /** Firing counts, sums and maxima (val > FIRE_THRESHOLD). */
  stats: FeatureStats;
  /** Highest activations with their rows. */
  top: TopExamples;
  /** Per feature: token id → tokens fired on; null without token files. */
  tokenCounts: Map<number, number>[] | null;
  /** Per feature: sampled (row, value) pairs where it fired (reservoir, seeded). */
  samples: { rows: number[]; values: number[] }[];
  /** Sibling co-firing counts. */
  siblings: SiblingPairs;
  /** Table 3 co-occurrence (tree SAEs), else null. */
  cooccurrence: CooccurrenceResult | null;
}

/** Options of `profileFeatures`. */
export interface ProfileOptions {
  /** Rows per engine call. */
  batchSize: number;
  /** Seed of the reservoir samples. */
  seed: number;
  /** Examples kept per feature. */
  topExamples?: number;
  /** Rows sampled per feature. */
  samplesPerFeature?: number;
  /** Layer sizes and per-layer parents, for the Table 3 rate of a tree SAE. */
  treeLayers?: { layers: number[]; parents: Int32Array[] };
}

/** Encode `data` in batches and profile every feature of `tree`. */
export async function profileFeatures(
  engine: SaeEngine,
  tree: FeatureTree,
  data: Pick<InspectRows, "x" | "rows" | "d" | "tokens">,
  opts: ProfileOptions,
): Promise<FeatureProfile> {
  const n = tree.n;
  const S = opts.samplesPerFeature ?? SAMPLES_PER_FEATURE;
  const stats = new FeatureStats(n);
  const top = new TopExamples(n, opts.topExamples ?? TOP_EXAMPLES);
  const tokenCounts = data.tokens
    ? Array.from({ length: n }, () => new Map<number, number>())
    : null;
  const samples = Array.from(
    { length: n },
    () => ({ rows: [] as number[], values: [] as number[] }),
  );
  const siblings = new SiblingPairs(tree.parentOf);
  const cooc = opts.treeLayers
    ? new CooccurrenceAccumulator(opts.treeLayers.layers, opts.treeLayers.parents)
    : null;
  const rng = new Rng(opts.seed);
  const seen = new Float64Array(n);
  for (let r0 = 0; r0 < data.rows; r0 += opts.batchSize) {
    const B = Math.min(opts.batchSize, data.rows - r0);
    const enc = await engine.encode(data.x.subarray(r0 * data.d, (r0 + B) * data.d), B);
    const codes: SparseCodes = { idx: enc.idx, val: enc.val, rows: B, k: enc.K };
    stats.add(codes);
    siblings.add(codes);
    cooc?.add(codes);
    for (let b = 0; b < B; b++) {
      const row = r0 + b;
      for (let s = 0; s < enc.K; s++) {
        const f = enc.idx[b * enc.K + s];
        const v = enc.val[b * enc.K + s];
        if (f === UNUSED_SLOT || !(v > FIRE_THRESHOLD)) continue;
        top.offer(f, row, v);
        if (tokenCounts) {
          const id = data.tokens!.ids[row];
          tokenCounts[f].set(id, (tokenCounts[f].get(id) ?? 0) + 1);
        }
        // Reservoir sampling (algorithm R): each firing row is kept with probability S / seen.
        seen[f]++;
        const sample = samples[f];
        if (sample.rows.length < S) {
          sample.rows.push(row);
          sample.values.push(v);
        } else {
          const j = rng.int(seen[f]);
          if (j < S) {
            sample.rows[j] = row;
            sample.values[j] = v;
          }
        }
      }
    }
  }
  return {
    tokens: data.rows,
    stats,
    top,
    tokenCounts,
    samples,
    siblings,
    cooccurrence: cooc ? cooc.result() : null,
  };
}

/** The `k` token ids a feature fired on most often (ties: lower id), with their counts. */
export function topTokens(profile: FeatureProfile, f: number, k: number): [number, number][] {
  const counts = profile.tokenCounts?.[f];
  if (!counts) return [];
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, k);
}
