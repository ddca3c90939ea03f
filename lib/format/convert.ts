/**
 * Conversions between Arbor checkpoints and other libraries' layouts: the format names the
 * CLI accepts, `exportCheckpoint` (native folder → SAELens folder) and `importCheckpoint`
 * (SAELens / sparsify folder → native checkpoint, when exact), plus `readForeign` for
 * inference over models that cannot become native checkpoints (see ForeignEngine).
 */
import { ArborError, DataError } from "../errors.ts";
import { initState, type SaeState } from "../sae/engine.ts";
import {
  type CheckpointInfo,
  loadSae,
  readCheckpointInfo,
  saveCheckpoint,
} from "../train/checkpoint.ts";
import { type ForeignSae, nativeBlockers } from "./foreign_sae.ts";
import { exportSaelens, readSaelens } from "./saelens.ts";
import { readSparsify } from "./sparsify.ts";

/** Layouts `export --format` writes. */
export const EXPORT_FORMATS = ["saelens"] as const;
/** Layouts `export --from` reads. */
export const IMPORT_FORMATS = ["saelens", "sparsify"] as const;
/** A layout Arbor writes. */
export type ExportFormat = typeof EXPORT_FORMATS[number];
/** A layout Arbor reads. */
export type ImportFormat = typeof IMPORT_FORMATS[number];

/** Check a format name; ArborError lists the known ones. */
export function checkFormat<T extends string>(
  name: string,
  known: readonly T[],
  what: string,
): T {
  if (!(known as readonly string[]).includes(name)) {
    throw new ArborError(`${what}: unknown format "${name}"; use one of ${known.join(", ")}`);
  }
  return name as T;
}

/** Export the checkpoint folder `dir` in `format` to `out`; returns the files written. */
export async function exportCheckpoint(
  dir: string,
  format: ExportFormat,
  out: string,
): Promise<string[]> {
  checkFormat(format, EXPORT_FORMATS, "export --format");
  const { config, state } = await loadSae(dir);
  const info = await readCheckpointInfo(dir);
  const threshold = await thresholdOf(dir, state);
  return exportSaelens(out, config, { ...state, threshold }, stringInfo(info));
}

/** loadSae does not restore θ (it lives in trainer_state.json); read it when present. */
async function thresholdOf(dir: string, state: SaeState): Promise<number> {
  try {
    const tj = JSON.parse(await Deno.readTextFile(`${dir}/trainer_state.json`));
    return typeof tj.threshold === "number" ? tj.threshold : state.threshold;
  } catch {
    return state.threshold;
  }
}

function stringInfo(info: CheckpointInfo): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(info)) {
    if (["string", "number", "boolean"].includes(typeof v)) out[k] = v;
  }
  return out;
}

/** Read a folder in another layout for inference. */
export function readForeign(format: ImportFormat, dir: string): Promise<ForeignSae> {
  checkFormat(format, IMPORT_FORMATS, "export --from");
  return format === "saelens" ? readSaelens(dir) : readSparsify(dir);
}

/**
 * The native state of an imported SAE; DataError listing every reason when its formula
 * cannot be expressed exactly by an Arbor checkpoint.
 */
export function foreignToState(sae: ForeignSae): SaeState {
  const why = nativeBlockers(sae);
  if (why.length) {
    throw new DataError(
      `${sae.source}: this ${sae.format} SAE cannot become an Arbor checkpoint without ` +
        `changing its outputs: ${why.join("; ")}. It can still be evaluated in place through ` +
        "ForeignEngine (lib/format/foreign_engine.ts)",
    );
  }
  const state = initState(sae.config);
  state.encW = sae.encW.slice();
  state.decW = sae.decW.slice();
  state.bDec = sae.bDec.slice();
  state.parents = sae.parents.map((p) => p.slice());
  state.threshold = sae.threshold;
  state.step = 1; // not 0: step 0 would re-initialise b_dec from the first batch
  return state;
}

/** Import `src` (in `format`) as a native checkpoint folder `out`. */
export async function importCheckpoint(
  format: ImportFormat,
  src: string,
  out: string,
): Promise<ForeignSae> {
  const sae = await readForeign(format, src);
  const state = foreignToState(sae);
  await saveCheckpoint(out, {
    config: sae.config,
    state,
    progress: {
      tokensSeen: 0,
      batchSize: 1,
      maxTokens: 0,
      cursor: null,
      rngState: 0,
      hooks: {},
      hookTensors: {},
    },
  }, { ...sae.info, imported_from: src, imported_format: format });
  return sae;
}
