/**
 * Open any SAE folder Arbor can run inference on — a native checkpoint (config.json +
 * sae.safetensors), a SAELens folder (cfg.json + sae_weights.safetensors) or an EleutherAI
 * sparsify folder (cfg.json + sae.safetensors) — behind one shape, so `evaluate` and
 * `inspect` share the detection. Native models encode with the engine factory (WebGPU or
 * the TS reference); imported ones with ForeignEngine, which keeps their encoder bias and
 * input normalisation (lib/format/foreign_sae.ts).
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import type { SaeConfig } from "../sae/config.ts";
import type { SaeEngine, SaeState } from "../sae/engine.ts";
import { CONFIG_FILE, loadSae, SAE_FILE } from "../train/checkpoint.ts";
import { createEngine, type EngineKind } from "../train/engine_factory.ts";
import { checkFormat, IMPORT_FORMATS, type ImportFormat, readForeign } from "./convert.ts";
import { ForeignEngine } from "./foreign_engine.ts";
import { SAELENS_CFG, SAELENS_WEIGHTS } from "./saelens.ts";
import { SPARSIFY_CFG, SPARSIFY_WEIGHTS } from "./sparsify.ts";

/** Layouts `openSae` reads: Arbor's own, or an import format. */
export type SaeFormat = "native" | ImportFormat;

/** Values `--format` accepts on `evaluate` / `inspect`. */
export const OPEN_FORMATS = ["native", ...IMPORT_FORMATS] as const;

/** The files that identify each layout, in detection order (named in the "neither" error). */
const LAYOUT_FILES: [SaeFormat, string[]][] = [
  ["native", [CONFIG_FILE, SAE_FILE]],
  ["saelens", [SAELENS_CFG, SAELENS_WEIGHTS]],
  ["sparsify", [SPARSIFY_CFG, SPARSIFY_WEIGHTS]],
];

/** What the layouts look like, for error messages. */
export const LAYOUTS_TEXT = LAYOUT_FILES.map(([f, files]) =>
  `${files.join(" + ")} (${f === "native" ? "Arbor checkpoint" : f})`
).join(", ");

/** An SAE folder ready for inference. */
export interface OpenedSae {
  /** The folder. */
  dir: string;
  /** The layout it was read in. */
  format: SaeFormat;
  /** Model shape and selection rule. */
  config: SaeConfig;
  /** Weights as an Arbor state (decoder rows [n, d], tree parents); zero optimiser moments. */
  state: SaeState;
  /** The JSON file whose `metadata` may record the training dataset (metadata.data). */
  metadataFile: string;
  /** Where the model came from: the format, the folder, and the source config's hook/model. */
  provenance: Record<string, string>;
  /**
   * Build an engine that encodes this SAE. `kind` applies to native models; imported ones
   * always run ForeignEngine (TypeScript on the CPU), said once through `notice`.
   */
  createEngine(kind: EngineKind | undefined, notice: (line: string) => void): Promise<SaeEngine>;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** The layout of `dir` by its files, or null when it is none of them. */
export async function detectSaeFormat(dir: string): Promise<SaeFormat | null> {
  for (const [format, files] of LAYOUT_FILES) {
    let all = true;
    for (const f of files) all &&= await isFile(join(dir, f));
    if (all) return format;
  }
  return null;
}

/**
 * Open the SAE in `dir`: in `format` when given (its files must be there), else in the
 * layout its files show. DataError naming the files looked for when it is none.
 */
export async function openSae(dir: string, format?: string): Promise<OpenedSae> {
  const want = format === undefined
    ? undefined
    : checkFormat(format, OPEN_FORMATS as unknown as SaeFormat[], "--format");
  const found = await detectSaeFormat(dir);
  if (want !== undefined) {
    const files = LAYOUT_FILES.find(([f]) => f === want)![1];
    for (const f of files) {
      if (!(await isFile(join(dir, f)))) {
        throw new DataError(
          `${dir}: --format ${want} expects ${files.join(" + ")}, but ${f} is missing` +
            (found && found !== want ? ` (the folder looks like ${found}: drop --format)` : ""),
        );
      }
    }
  } else if (found === null) {
    throw new DataError(
      `${dir}: not an SAE folder; looked for ${LAYOUTS_TEXT}. Pass a checkpoint written by ` +
        "train, a SAELens or a sparsify folder (--format saelens|sparsify)",
    );
  }
  const fmt = want ?? found!;
  if (fmt === "native") {
    const { config, state } = await loadSae(dir);
    return {
      dir,
      format: fmt,
      config,
      state,
      metadataFile: join(dir, CONFIG_FILE),
      provenance: { format: fmt, source: dir },
      createEngine: (kind, notice) => createEngine(kind, config, state, notice),
    };
  }
  const sae = await readForeign(fmt, dir);
  const engine = new ForeignEngine(sae);
  const state = await engine.readState();
  let told = false;
  return {
    dir,
    format: fmt,
    config: sae.config,
    state,
    metadataFile: join(dir, fmt === "saelens" ? SAELENS_CFG : SPARSIFY_CFG),
    provenance: { format: fmt, source: dir, ...sae.info },
    createEngine: (_kind, notice) => {
      if (!told) notice(`note: ${engine.description}`);
      told = true;
      return Promise.resolve(new ForeignEngine(sae));
    },
  };
}
