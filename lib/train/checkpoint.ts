/**
 * Checkpoints in the reference layout (DESIGN §8), so released Tree SAEs load and ours
 * load in the reference code:
 *
 *   sae.safetensors            encoder.weight F32 [n, d], decoder.weight F32 [d, n]
 *                              (the transpose of our decW rows), b_dec F32 [d],
 *                              steps_since_fired I64 [n] (reference unit: steps),
 *                              parent_index_l I64 [s_l] for tree layers l ≥ 1
 *                              (values in [0, o_l]; o_l = root).
 *   config.json                reference keys (type, d_in, d_sae, k | features_per_layer,
 *                              k_per_layer, auxk, aux_layers, dead_steps_threshold, ...)
 *                              plus our exact config under metadata.arbor.
 *   trainer_state.safetensors  Adam moments (adam.<param>.m / .v, our row layout) and
 *                              tokens_since_fired U32 [n] (the exact dead counters),
 *                              plus tensors hooks ask to save (hook.<name>).
 *   trainer_state.json         step, tokens seen, batch size, data cursor, RNG state,
 *                              BatchTopK threshold, hook JSON state — written last.
 *
 * Writing: every file is first written to a temporary name and fsynced; only then are
 * they renamed into place (trainer_state.json last), so a failure while writing leaves
 * the previous checkpoint intact and no partial file behind. Every file records the step;
 * loading refuses files from different steps (a crash between the renames).
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import { VERSION } from "../version.ts";
import {
  makeConfig,
  numFeatures,
  SAE_ARCHS,
  type SaeArch,
  type SaeConfig,
  validateConfig,
} from "../sae/config.ts";
import type { SaeState } from "../sae/engine.ts";
import { readSafetensors, serializeSafetensors, type TensorData } from "../format/safetensors.ts";
import { syncDir, TMP_SUFFIX } from "../store/atomic.ts";
import { fromCheckpointParents, parentKey } from "../tree/structure.ts";

/** File names of a checkpoint folder. */
export const SAE_FILE = "sae.safetensors";
/** Model config (reference keys + metadata.arbor). */
export const CONFIG_FILE = "config.json";
/** Optimiser tensors. */
export const TRAINER_TENSORS_FILE = "trainer_state.safetensors";
/** Trainer progress, written last. */
export const TRAINER_JSON_FILE = "trainer_state.json";
/** Format tag of trainer_state.json. */
const TRAINER_FORMAT = "arbor-trainer-state";
/** Version of trainer_state.json. */
const TRAINER_VERSION = 1;

/** Where training stands, beside the model state (all JSON-serialisable). */
export interface TrainerProgress {
  /** Tokens trained on so far. */
  tokensSeen: number;
  /** Rows per batch (converts token counts to the reference's step counts). */
  batchSize: number;
  /** Tokens the run is planned for (resume continues to it unless told otherwise). */
  maxTokens: number;
  /** The data stream's cursor after the last trained batch (store ReadCursor), or null. */
  cursor: unknown;
  /** State of the trainer's Rng (lib/util/rng.ts). */
  rngState: number;
  /** JSON state saved by trainer hooks (e.g. the Tree SAE's capacity schedule), by hook name. */
  hooks: Record<string, unknown>;
  /** Tensors saved by trainer hooks, by name. */
  hookTensors: Record<string, Float32Array | Int32Array | Uint32Array>;
}

/** A full checkpoint: model config, model + optimiser state, trainer progress. */
export interface Checkpoint {
  config: SaeConfig;
  state: SaeState;
  progress: TrainerProgress;
}

/** Free-form provenance stored in config.json (e.g. the dataset and hook it was trained on). */
export type CheckpointInfo = Record<string, string | number | boolean>;

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** The reference-style config.json of a model. */
export function referenceConfigJson(
  c: SaeConfig,
  batchSize: number,
  info: CheckpointInfo = {},
): Record<string, unknown> {
  const n = numFeatures(c);
  const out: Record<string, unknown> = {
    type: c.arch,
    d_in: c.dIn,
    hook_name: typeof info.hook_name === "string" ? info.hook_name : "",
    dead_steps_threshold: Math.ceil(c.deadTokens / batchSize),
    dead_threshold: 1e-3,
    standardize: true,
  };
  if (c.arch === "matryoshka") {
    Object.assign(out, { features_per_layer: c.layers, k: c.k, auxk: c.auxK, use_loss_var: true });
  } else if (c.arch !== "tree") { // single-dictionary architectures
    Object.assign(out, { d_sae: n, k: c.k, auxk: c.auxK });
  } else {
    Object.assign(out, {
      features_per_layer: c.layers,
      k_per_layer: c.kPerLayer,
      auxk: c.auxK,
      use_loss_var: true,
      aux_layers: c.auxAlpha.flatMap((a, l) => (a > 0 ? [l] : [])),
    });
  }
  out.metadata = { ...info, arbor: { version: VERSION, config: c } };
  return out;
}

/** Tensors of sae.safetensors. */
function saeTensors(c: SaeConfig, s: SaeState, batchSize: number): Record<string, TensorData> {
  const n = numFeatures(c);
  const d = c.dIn;
  const steps = BigInt64Array.from(s.tokensSinceFired, (t) => BigInt(Math.floor(t / batchSize)));
  const out: Record<string, TensorData> = {
    "encoder.weight": { shape: [n, d], data: s.encW },
    "decoder.weight": { shape: [d, n], data: transpose(s.decW, n, d) },
    b_dec: { shape: [d], data: s.bDec },
    steps_since_fired: { shape: [n], data: steps },
  };
  for (let l = 1; l < s.parents.length; l++) {
    out[parentKey(l)] = { shape: [s.parents[l].length], data: s.parents[l], dtype: "I64" };
  }
  return out;
}

/** Tensors of trainer_state.safetensors. */
function trainerTensors(c: SaeConfig, ck: Checkpoint): Record<string, TensorData> {
  const n = numFeatures(c);
  const d = c.dIn;
  const a = ck.state.adam;
  const out: Record<string, TensorData> = {
    "adam.encoder.m": { shape: [n, d], data: a.encW.m },
    "adam.encoder.v": { shape: [n, d], data: a.encW.v },
    "adam.decoder.m": { shape: [n, d], data: a.decW.m },
    "adam.decoder.v": { shape: [n, d], data: a.decW.v },
    "adam.b_dec.m": { shape: [d], data: a.bDec.m },
    "adam.b_dec.v": { shape: [d], data: a.bDec.v },
    tokens_since_fired: { shape: [n], data: ck.state.tokensSinceFired },
  };
  for (const [name, t] of Object.entries(ck.progress.hookTensors)) {
    out[`hook.${name}`] = { shape: [t.length], data: t };
  }
  return out;
}

/**
 * Save a checkpoint into `dir` (created if missing), replacing any earlier one there.
 * All files are staged under temporary names first; a failure removes them and leaves
 * the previous checkpoint untouched.
 */
export async function saveCheckpoint(dir: string, ck: Checkpoint, info: CheckpointInfo = {}) {
  const c = ck.config;
  const step = String(ck.state.step);
  const meta = { format: "arbor", step };
  const files: [string, Uint8Array][] = [
    [TRAINER_TENSORS_FILE, serializeSafetensors(trainerTensors(c, ck), meta)],
    [SAE_FILE, serializeSafetensors(saeTensors(c, ck.state, ck.progress.batchSize), meta)],
    [CONFIG_FILE, encodeJson(referenceConfigJson(c, ck.progress.batchSize, info))],
    [
      TRAINER_JSON_FILE,
      encodeJson({
        format: TRAINER_FORMAT,
        version: TRAINER_VERSION,
        step: ck.state.step,
        tokens_seen: ck.progress.tokensSeen,
        batch_size: ck.progress.batchSize,
        max_tokens: ck.progress.maxTokens,
        threshold: ck.state.threshold,
        rng_state: ck.progress.rngState,
        cursor: ck.progress.cursor ?? null,
        hooks: ck.progress.hooks,
        hook_tensors: Object.keys(ck.progress.hookTensors).map((
          k,
        ) => [k, tensorKind(ck.progress.hookTensors[k])]),
      }),
    ],
  ];
  await Deno.mkdir(dir, { recursive: true });
  const staged: string[] = [];
  try {
    for (const [name, bytes] of files) {
      const tmp = join(dir, name + TMP_SUFFIX);
      staged.push(tmp);
      await writeDurably(tmp, bytes);
    }
  } catch (e) {
    for (const tmp of staged) await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  for (const [name] of files) await Deno.rename(join(dir, name + TMP_SUFFIX), join(dir, name));
  await syncDir(dir);
}

function tensorKind(t: Float32Array | Int32Array | Uint32Array): string {
  return t instanceof Float32Array ? "f32" : t instanceof Int32Array ? "i32" : "u32";
}

function encodeJson(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v, null, 2) + "\n");
}

async function writeDurably(path: string, bytes: Uint8Array) {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    let done = 0;
    while (done < bytes.length) done += await file.write(bytes.subarray(done));
    await file.sync();
  } finally {
    file.close();
  }
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(`${path}: file not found`);
    throw new DataError(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v;
  } catch (e) {
    throw new DataError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** The SaeConfig of a config.json: ours from metadata.arbor, else mapped from the reference keys. */
export function configFromJson(raw: Record<string, unknown>, path: string): SaeConfig {
  const arbor = (raw.metadata as { arbor?: { config?: SaeConfig } } | undefined)?.arbor?.config;
  try {
    if (arbor) {
      validateConfig(arbor, path);
      return arbor;
    }
    return configFromReference(raw, path);
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError((e as Error).message);
  }
}

function configFromReference(raw: Record<string, unknown>, path: string): SaeConfig {
  const type = raw.type as string;
  const known = SAE_ARCHS;
  if (!known.includes(type as SaeArch)) {
    throw new DataError(
      `${path}: type "${type}" is not an SAE Arbor can load (${known.join(", ")})`,
    );
  }
  const arch = type as SaeArch;
  const num = (key: string): number => {
    const v = raw[key];
    if (typeof v !== "number") throw new DataError(`${path}: ${key} is missing or not a number`);
    return v;
  };
  const list = (key: string): number[] => {
    const v = raw[key];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "number")) {
      throw new DataError(`${path}: ${key} is missing or not a list of numbers`);
    }
    return v;
  };
  const layered = arch === "tree" || arch === "matryoshka";
  const layers = layered ? list("features_per_layer") : [num("d_sae")];
  if (raw.d_sae !== undefined && layered) {
    const sum = layers.reduce((a, b) => a + b, 0);
    if (raw.d_sae !== sum) {
      throw new DataError(
        `${path}: features_per_layer sums to ${sum} but d_sae = ${raw.d_sae}; they must agree`,
      );
    }
  }
  const auxK = typeof raw.auxk === "number" ? raw.auxk : 0;
  const auxLayers = Array.isArray(raw.aux_layers) ? (raw.aux_layers as number[]) : [0];
  return makeConfig({
    arch,
    dIn: num("d_in"),
    layers,
    k: arch === "tree" ? undefined : num("k"),
    kPerLayer: arch === "tree" ? list("k_per_layer") : [],
    auxK,
    auxAlpha: arch === "tree"
      ? layers.map((_, l) => (auxLayers.includes(l) ? 1 / 32 : 0))
      : undefined,
  }, path);
}

function expectShape(path: string, name: string, got: number[], want: number[], hint: string) {
  if (got.length !== want.length || got.some((g, i) => g !== want[i])) {
    throw new DataError(`${path}: ${name} has shape [${got}], expected [${want}] (${hint})`);
  }
}

/** The provenance stored in a checkpoint's config.json (metadata without Arbor's own block). */
export async function readCheckpointInfo(dir: string): Promise<CheckpointInfo> {
  const raw = await readJson(join(dir, CONFIG_FILE));
  const { arbor: _, ...info } = (raw.metadata ?? {}) as Record<string, unknown>;
  return info as CheckpointInfo;
}

/** A model loaded from a checkpoint folder; `state` holds zero moments when there is no trainer state. */
export interface LoadedSae {
  config: SaeConfig;
  state: SaeState;
}

/**
 * Load the model of a checkpoint folder (ours or a reference/released one): config.json +
 * sae.safetensors, checked against each other (d_in, layer sizes, k_l ≤ s_l, parents
 * pointing only at earlier layers or the root). Optimiser moments are zero. Dead counters:
 * our trainer state's exact tokens_since_fired when present, else steps_since_fired ×
 * `batchSize` tokens (default: the trainer state's batch size, or 1).
 */
export async function loadSae(dir: string, batchSize?: number): Promise<LoadedSae> {
  const trainer = await readTrainerJson(dir);
  batchSize ??= typeof trainer?.batch_size === "number" ? trainer.batch_size : 1;
  const cpath = join(dir, CONFIG_FILE);
  const spath = join(dir, SAE_FILE);
  const config = configFromJson(await readJson(cpath), cpath);
  const st = await readSafetensors(spath);
  const n = numFeatures(config);
  const d = config.dIn;
  const sizes = `config.json: d_in = ${d}, ${n} features`;
  expectShape(spath, "encoder.weight", st.info("encoder.weight").shape, [n, d], sizes);
  expectShape(spath, "decoder.weight", st.info("decoder.weight").shape, [d, n], sizes);
  expectShape(spath, "b_dec", st.info("b_dec").shape, [d], sizes);
  const state = initShell(config);
  state.encW = st.f32("encoder.weight").slice();
  state.decW = transpose(st.f32("decoder.weight"), d, n);
  state.bDec = st.f32("b_dec").slice();
  if (st.has("steps_since_fired")) {
    expectShape(spath, "steps_since_fired", st.info("steps_since_fired").shape, [n], sizes);
    const steps = st.info("steps_since_fired").dtype === "I64"
      ? Array.from(st.i64("steps_since_fired"), Number)
      : Array.from(st.i32("steps_since_fired"));
    state.tokensSinceFired = Uint32Array.from(steps, (s) => Math.min(0xffffffff, s * batchSize));
  }
  if (trainer) {
    const tt = await readSafetensors(join(dir, TRAINER_TENSORS_FILE));
    if (tt.has("tokens_since_fired") && tt.info("tokens_since_fired").byteLength === n * 4) {
      state.tokensSinceFired = tt.u32("tokens_since_fired").slice();
    }
  }
  if (config.arch === "tree") {
    const tensors: Record<string, BigInt64Array | Int32Array> = {};
    for (let l = 1; l < config.layers.length; l++) {
      const key = parentKey(l);
      if (st.has(key)) tensors[key] = st.info(key).dtype === "I64" ? st.i64(key) : st.i32(key);
    }
    const tree = fromCheckpointParents(config.layers, tensors, {
      kPerLayer: config.kPerLayer,
      n,
      source: spath,
    });
    state.parents = tree.parents;
  }
  return { config, state };
}

/** trainer_state.json of a folder, or null when there is none (a model-only checkpoint). */
async function readTrainerJson(dir: string): Promise<Record<string, unknown> | null> {
  try {
    await Deno.stat(join(dir, TRAINER_JSON_FILE));
  } catch {
    return null;
  }
  return await readJson(join(dir, TRAINER_JSON_FILE));
}

/** A state of the right shapes (weights filled by the caller; zero moments and counters). */
function initShell(config: SaeConfig): SaeState {
  const n = numFeatures(config);
  const d = config.dIn;
  const z = (len: number) => ({ m: new Float32Array(len), v: new Float32Array(len) });
  return {
    encW: new Float32Array(0),
    decW: new Float32Array(0),
    bDec: new Float32Array(0),
    parents: config.arch === "tree" ? config.layers.map((s) => new Int32Array(s)) : [],
    adam: { encW: z(n * d), decW: z(n * d), bDec: z(d) },
    tokensSinceFired: new Uint32Array(n),
    threshold: -1,
    step: 0,
  };
}

/** Load a full training checkpoint (model + trainer state) for `train --resume`. */
export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const tpath = join(dir, TRAINER_JSON_FILE);
  const tj = await readJson(tpath);
  if (tj.format !== TRAINER_FORMAT || tj.version !== TRAINER_VERSION) {
    throw new DataError(
      `${tpath}: not an Arbor trainer state (format ${tj.format}, version ${tj.version})`,
    );
  }
  const num = (key: string): number => {
    const v = tj[key];
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new DataError(`${tpath}: ${key} is missing or not a number`);
    }
    return v;
  };
  const step = num("step");
  const batchSize = num("batch_size");
  const { config, state } = await loadSae(dir, batchSize);
  const spath = join(dir, SAE_FILE);
  const sae = await readSafetensors(spath);
  const ttpath = join(dir, TRAINER_TENSORS_FILE);
  const tt = await readSafetensors(ttpath);
  for (const [path, file] of [[spath, sae], [ttpath, tt]] as const) {
    if (file.metadata.step !== String(step)) {
      throw new DataError(
        `${path}: written at step ${file.metadata.step} but ${TRAINER_JSON_FILE} is at step ${step}; ` +
          "the checkpoint was interrupted while being replaced — resume from an older copy",
      );
    }
  }
  const n = numFeatures(config);
  const d = config.dIn;
  const tensor = (name: string, len: number) => {
    const t = tt.f32(name);
    if (t.length !== len) {
      throw new DataError(`${ttpath}: ${name} has ${t.length} values, expected ${len}`);
    }
    return t.slice();
  };
  state.adam = {
    encW: { m: tensor("adam.encoder.m", n * d), v: tensor("adam.encoder.v", n * d) },
    decW: { m: tensor("adam.decoder.m", n * d), v: tensor("adam.decoder.v", n * d) },
    bDec: { m: tensor("adam.b_dec.m", d), v: tensor("adam.b_dec.v", d) },
  };
  const counters = tt.u32("tokens_since_fired");
  if (counters.length !== n) {
    throw new DataError(
      `${ttpath}: tokens_since_fired has ${counters.length} values, expected ${n}`,
    );
  }
  state.tokensSinceFired = counters.slice();
  state.threshold = num("threshold");
  state.step = step;
  const hookTensors: TrainerProgress["hookTensors"] = {};
  for (const [name, kind] of (tj.hook_tensors ?? []) as [string, string][]) {
    const key = `hook.${name}`;
    hookTensors[name] = kind === "f32"
      ? tt.f32(key).slice()
      : kind === "i32"
      ? tt.i32(key).slice()
      : tt.u32(key).slice();
  }
  return {
    config,
    state,
    progress: {
      tokensSeen: num("tokens_seen"),
      batchSize,
      maxTokens: num("max_tokens"),
      cursor: tj.cursor ?? null,
      rngState: num("rng_state"),
      hooks: (tj.hooks ?? {}) as Record<string, unknown>,
      hookTensors,
    },
  };
}
