/**
 * Open a checkpoint for inspection: load the SAE, find and read its dataset, encode the
 * rows and profile every feature. Without a dataset the structure (tree, decoder
 * neighbours) is still available and `dataProblem` says what is missing.
 */
import { DataError } from "../errors.ts";
import { openSae } from "../format/open_sae.ts";
import type { SaeConfig } from "../sae/config.ts";
import type { SaeState } from "../sae/engine.ts";
import type { EngineKind } from "../train/engine_factory.ts";
import { type FeatureTree, featureTree } from "./structure.ts";
import { type InspectRows, locateData, readInspectRows } from "./data_source.ts";
import { type FeatureProfile, profileFeatures } from "./profile.ts";
import { idLabeler, type TokenLabeler, tokenLabeler } from "./token_text.ts";
import { matchTruth, type TruthMatch } from "./truth_match.ts";
import { DecoderNeighbours } from "./nearest.ts";

/** Tokens encoded by default. */
export const DEFAULT_INSPECT_TOKENS = 32768;

/** Options of `openInspection`. */
export interface InspectOptions {
  /** Dataset folder (default: the one recorded in the checkpoint). */
  data?: string;
  /** Skip the data: structure only. */
  noData?: boolean;
  /** Throw when no dataset can be read (feature and HTML views); the tree view passes false. */
  requireData: boolean;
  /** Rows to encode. */
  tokens: number;
  /** Rows per engine call. */
  batchSize: number;
  /** Engine (default: GPU when available, else the reference). */
  engine?: EngineKind;
  /** SAE folder layout (native, saelens, sparsify; default: detected from the files). */
  format?: string;
  /** Seed of the reservoir samples. */
  seed: number;
  /** Progress and notices (default: stderr). */
  notice?: (line: string) => void;
}

/** A checkpoint ready to show. */
export interface Inspection {
  dir: string;
  config: SaeConfig;
  state: SaeState;
  tree: FeatureTree;
  neighbours: DecoderNeighbours;
  /** Rows read, or null without data. */
  data: InspectRows | null;
  /** Why there is no data (null when there is). */
  dataProblem: string | null;
  profile: FeatureProfile | null;
  labeler: TokenLabeler;
  /** Synthetic datasets: the true feature behind each learned one. */
  truth: TruthMatch | null;
}

/** Load, locate data, encode and profile (see module doc). */
export async function openInspection(dir: string, o: InspectOptions): Promise<Inspection> {
  const notice = o.notice ?? ((line: string) => console.error(line));
  const sae = await openSae(dir, o.format);
  const { config, state } = sae;
  const tree = featureTree(config, state.parents);
  const neighbours = new DecoderNeighbours(state.decW, config.dIn);
  const base = { dir, config, state, tree, neighbours };
  const loc = o.noData
    ? { problem: "--structure-only: no activation data read" }
    : await locateData(dir, o.data, sae.metadataFile);
  if ("problem" in loc) {
    if (o.requireData && !o.noData) {
      throw new DataError(`${loc.problem} (or --structure-only for the tree without statistics)`);
    }
    return {
      ...base,
      data: null,
      dataProblem: loc.problem,
      profile: null,
      labeler: idLabeler("no data"),
      truth: null,
    };
  }
  const data = await readInspectRows(loc.dir, o.tokens, config.dIn);
  const engine = await sae.createEngine(o.engine, notice);
  let profile: FeatureProfile;
  try {
    profile = await profileFeatures(engine, tree, data, {
      batchSize: o.batchSize,
      seed: o.seed,
      ...(config.arch === "tree"
        ? { treeLayers: { layers: config.layers, parents: state.parents } }
        : {}),
    });
  } finally {
    engine.destroy();
  }
  const labeler = data.truth
    ? idLabeler("synthetic dataset: rows are shown as token indices with their true features")
    : await tokenLabeler(data.manifest.provenance, data.dir);
  const truth = data.truth ? matchTruth(state.decW, config.dIn, data.truth.truth) : null;
  return { ...base, data, dataProblem: null, profile, labeler, truth };
}
