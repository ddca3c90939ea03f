/**
 * The SAELens layout: a folder with `cfg.json` and `sae_weights.safetensors`
 * (`W_enc` [d, n], `W_dec` [n, d], `b_enc` [n], `b_dec` [d]; JumpReLU adds `threshold` [n]).
 *
 * Export (`exportSaelens`) writes an Arbor model in that layout so SAELens-based tools can
 * load the weights, plus `tree.json` for a Tree SAE and a README.md with the exact formula.
 * cfg.json records the exact model under the key "arbor" (config, θ, the formula), which
 * `readSaelens` uses to rebuild the model bit-for-bit (export → import is exact).
 *
 * Exact reconstruction of an export (one token x [d]; SAELENS_FORMULA below, also in
 * cfg.json "arbor.reconstruction" and README.md):
 *   μ = mean_j x_j, σ = sqrt(mean_j (x_j − μ)²), xs = (x − μ)/(σ + 1e-5)
 *   pre = (xs − b_dec) · W_enc + b_enc            (b_enc = 0: Arbor has no encoder bias)
 *   f = select(pre), x̂s = f · W_dec + b_dec, x̂ = x̂s·(σ + 1e-5) + μ
 * SAELens' own `normalize_activations: "layer_norm"` (recorded, being the closest mode) uses the
 * sample std and un-scales by σ without the 1e-5, so loading in SAELens is close, not exact.
 * Architecture mapping: topk / matryoshka → "topk" (exact up to the normalisation note);
 * batchtopk → "jumprelu" with threshold θ for every feature (Arbor additionally keeps at
 * most min(n, 4k) per token); tree → "topk" with k = Σ k_l, which SAELens runs *un-gated*:
 * the exact tree selection needs tree.json; mp (Matching-Pursuit SAE) → "arbor_mp", an
 * architecture SAELens does not know, so it refuses the model instead of running it wrongly.
 *
 * Import (`readSaelens`) of third-party SAELens folders supports TopK SAEs ("topk", or the
 * legacy "standard" with activation_fn_str "topk") with normalize_activations "none" or
 * "layer_norm"; their encoder bias is kept (ForeignSae.bEnc). Other architectures are
 * refused with the field named.
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import { VERSION } from "../version.ts";
import {
  makeConfig,
  numFeatures,
  type SaeConfig,
  slotsPerRow,
  validateConfig,
} from "../sae/config.ts";
import type { SaeState } from "../sae/engine.ts";
import { readSafetensors, serializeSafetensors, type TensorData } from "./safetensors.ts";
import { writeFileAtomic } from "../store/atomic.ts";
import { jsonBytes, type JsonFile, readJsonFile } from "./json_file.ts";
import {
  expectShape,
  type ForeignSae,
  isMp,
  type Normalization,
  transpose,
} from "./foreign_sae.ts";
import { MP_RESIDUAL_EPS } from "../sae/mp/reference.ts";
import { parseTreeJson, TREE_FILE, treeJson } from "./tree_file.ts";

/** SAELens config file name. */
export const SAELENS_CFG = "cfg.json";
/** SAELens weights file name. */
export const SAELENS_WEIGHTS = "sae_weights.safetensors";
/** Explanation written beside an export. */
export const SAELENS_README = "README.md";
/** Tag of the "arbor" block in an exported cfg.json. */
const EXPORT_FORMAT = "arbor-saelens-export";
/** Version of that block. */
const EXPORT_VERSION = 1;

/** The exact reconstruction formula of an export, as recorded in cfg.json and README.md. */
export const SAELENS_FORMULA = [
  "mu = mean_j x[j]; sigma = sqrt(mean_j (x[j] - mu)^2)   (population std over d_in)",
  "xs = (x - mu) / (sigma + 1e-5)",
  "pre = (xs - b_dec) @ W_enc + b_enc                     (b_enc is all zeros)",
  "f = select(pre)                                        (see arbor.selection)",
  "xs_hat = f @ W_dec + b_dec",
  "x_hat = xs_hat * (sigma + 1e-5) + mu",
];

/** The selection rule of an export, in words, per architecture. */
function selectionText(c: SaeConfig, threshold: number): string {
  const k = c.k;
  switch (c.arch) {
    case "topk":
    case "matryoshka":
      return `topk: keep the ${c.k} largest pre per token (ties: lower index), f = max(pre, 0)`;
    case "batchtopk":
      return threshold >= 0
        ? `threshold: f = pre where pre > ${threshold} (the 'threshold' tensor), at most the ` +
          `${slotsPerRow(c)} largest per token (ties: lower index), else 0`
        : `topk: keep the ${c.k} largest pre per token, f = max(pre, 0) (no threshold learned yet)`;
    case "tree":
      return `tree: for layers l = 0..${c.layers.length - 1} in order (sizes ` +
        `features_per_layer), a feature is eligible iff its parent (tree.json) is the root ` +
        `or the parent's f > 1e-3; keep the k_per_layer[l] largest of (eligible ? pre : 0) in ` +
        `the layer (ties: lower index), f = max(that, 0)`;
    default: // "mp": the Matching-Pursuit SAE (tied weights; pre and b_enc unused)
      return `matching pursuit on xs with the rows of W_dec as atoms: r = xs; up to ${k} ` +
        `times: c = W_dec · r, i = argmax c (ties: lower index), stop if c[i] <= 0, ` +
        `f[i] += c[i], r -= c[i]·W_dec[i], stop if ||r|| < ${MP_RESIDUAL_EPS} or i was ` +
        "picked before; b_dec is 0";
  }
}

/** validateConfig for every arch, MP included before SaeArch lists it (same rules as topk). */
function validateAny(c: SaeConfig, where: string) {
  validateConfig(isMp(c) ? { ...c, arch: "topk" } : c, where);
}

/** Write an Arbor model (config + state) as a SAELens folder `out` (created if missing). */
export async function exportSaelens(
  out: string,
  config: SaeConfig,
  state: SaeState,
  info: Record<string, string | number | boolean> = {},
): Promise<string[]> {
  validateAny(config, "export");
  const n = numFeatures(config);
  const d = config.dIn;
  const jump = config.arch === "batchtopk" && state.threshold >= 0;
  const k = config.arch === "tree" ? config.kPerLayer.reduce((a, b) => a + b, 0) : config.k;
  const tensors: Record<string, TensorData> = {
    W_enc: { shape: [d, n], data: transpose(state.encW, n, d) },
    W_dec: { shape: [n, d], data: state.decW.slice() },
    b_enc: { shape: [n], data: new Float32Array(n) },
    b_dec: { shape: [d], data: state.bDec.slice() },
  };
  if (jump) tensors.threshold = { shape: [n], data: new Float32Array(n).fill(state.threshold) };
  const hook = typeof info.hook_name === "string" ? info.hook_name : "";
  const cfg: Record<string, unknown> = {
    architecture: jump ? "jumprelu" : isMp(config) ? "arbor_mp" : "topk",
    d_in: d,
    d_sae: n,
    dtype: "float32",
    device: "cpu",
    apply_b_dec_to_input: true,
    normalize_activations: "layer_norm",
    reshape_activations: "none",
    hook_name: hook,
    metadata: { hook_name: hook, ...info },
    arbor: {
      format: EXPORT_FORMAT,
      version: EXPORT_VERSION,
      arbor_version: VERSION,
      config,
      threshold: state.threshold,
      tree_file: config.arch === "tree" ? TREE_FILE : null,
      selection: selectionText(config, state.threshold),
      reconstruction: SAELENS_FORMULA,
      note: "normalize_activations records SAELens' closest mode; the exact formula is " +
        "'reconstruction' (population std, and 1e-5 added on the way out too)",
    },
  };
  if (!jump) Object.assign(cfg, { k, activation_fn_kwargs: { k } });
  const files: [string, Uint8Array][] = [
    [SAELENS_WEIGHTS, serializeSafetensors(tensors, { format: "pt" })],
    [SAELENS_CFG, jsonBytes(cfg)],
    [SAELENS_README, new TextEncoder().encode(readmeText(config, state.threshold))],
  ];
  if (config.arch === "tree") {
    files.push([TREE_FILE, jsonBytes(treeJson(config.layers, config.kPerLayer, state.parents))]);
  }
  await Deno.mkdir(out, { recursive: true });
  for (const [name, bytes] of files) await writeFileAtomic(out, name, [bytes]);
  return files.map(([name]) => join(out, name));
}

function readmeText(c: SaeConfig, threshold: number): string {
  return [
    `# Arbor ${c.arch} SAE in the SAELens layout`,
    "",
    `Exported by Arbor ${VERSION}. d_in = ${c.dIn}, d_sae = ${numFeatures(c)}.`,
    "Files: cfg.json, sae_weights.safetensors (W_enc [d_in, d_sae], W_dec [d_sae, d_in],",
    "b_enc [d_sae] (zeros), b_dec [d_in]" +
    (c.arch === "batchtopk" && threshold >= 0 ? ", threshold [d_sae])" : ")") +
    (c.arch === "tree" ? ", tree.json (the tree)." : "."),
    "",
    "Exact reconstruction of one token x (row vector of d_in floats):",
    "",
    "```",
    ...SAELENS_FORMULA,
    "```",
    "",
    `select: ${selectionText(c, threshold)}.`,
    "",
    'cfg.json records normalize_activations = "layer_norm", SAELens\' closest mode: it divides',
    "by the sample std (d_in − 1) and multiplies back by std without the 1e-5, so SAELens'",
    "outputs are close to, not bit-equal with, the formula above." +
    (c.arch === "tree"
      ? " SAELens runs this model as a plain TopK with k = Σ k_per_layer, without the tree" +
        " gating; only the formula above with tree.json is exact."
      : isMp(c)
      ? ' SAELens has no Matching-Pursuit SAE: the architecture "arbor_mp" makes it refuse' +
        " the model; apply the formula above with the pursuit as select (W_enc = W_dec^T)."
      : ""),
    "",
  ].join("\n");
}

/** Read a SAELens folder (an Arbor export exactly, or a third-party TopK SAE). */
export async function readSaelens(dir: string): Promise<ForeignSae> {
  const cfg = await readJsonFile(join(dir, SAELENS_CFG));
  const wpath = join(dir, SAELENS_WEIGHTS);
  const st = await readSafetensors(wpath);
  const d = cfg.int("d_in", 1, "the input width");
  const n = cfg.int("d_sae", 1, "the number of features");
  const arbor = cfg.object("arbor");
  const config = arbor ? arborConfig(arbor, d, n) : thirdPartyConfig(cfg, d, n);
  for (const [name, shape] of [["W_enc", [d, n]], ["W_dec", [n, d]], ["b_dec", [d]]] as const) {
    expectShape(wpath, name, st.info(name).shape, [...shape]);
  }
  const bEnc = st.has("b_enc") ? st.f32("b_enc").slice() : new Float32Array(n);
  expectShape(wpath, "b_enc", [bEnc.length], [n]);
  const normalize = arbor ? "arbor" : normalization(cfg);
  let parents: Int32Array[] = [];
  if (config.arch === "tree") {
    parents = parseTreeJson(await readJsonFile(join(dir, TREE_FILE)), config);
  }
  const meta = cfg.object("metadata");
  const info: Record<string, string> = {};
  for (const key of ["hook_name", "model_name"]) {
    const v = cfg.raw[key] ?? meta?.raw[key];
    if (typeof v === "string" && v) info[key] = v;
  }
  return {
    source: dir,
    format: "saelens",
    config,
    encW: transpose(st.f32("W_enc"), d, n),
    bEnc,
    decW: st.f32("W_dec").slice(),
    bDec: st.f32("b_dec").slice(),
    applyBDec: arbor ? true : cfg.optBool("apply_b_dec_to_input", true),
    normalize,
    parents,
    threshold: arbor ? thresholdOf(arbor) : -1,
    info,
  };
}

function arborConfig(a: JsonFile, d: number, n: number): SaeConfig {
  if (a.raw.format !== EXPORT_FORMAT || a.raw.version !== EXPORT_VERSION) {
    throw new DataError(
      `${a.path}: unknown Arbor export block (format ${JSON.stringify(a.raw.format)}, version ` +
        `${JSON.stringify(a.raw.version)}); expected ${EXPORT_FORMAT} version ${EXPORT_VERSION}`,
    );
  }
  const c = a.object("config");
  if (!c) throw new DataError(`${a.path}: required field "config" is missing`);
  const config = c.raw as unknown as SaeConfig;
  try {
    validateAny(config, c.path);
  } catch (e) {
    throw new DataError((e as Error).message);
  }
  if (config.dIn !== d || numFeatures(config) !== n) {
    throw new DataError(
      `${c.path}: dIn ${config.dIn} / ${
        numFeatures(config)
      } features disagree with d_in ${d} / d_sae ${n}`,
    );
  }
  return config;
}

function thresholdOf(a: JsonFile): number {
  const v = a.raw.threshold;
  if (typeof v !== "number") throw new DataError(`${a.path}: field "threshold" must be a number`);
  return v;
}

function thirdPartyConfig(cfg: JsonFile, d: number, n: number): SaeConfig {
  const arch = cfg.string("architecture", 'e.g. "topk"');
  const legacyTopk = arch === "standard" && cfg.raw.activation_fn_str === "topk";
  if (arch !== "topk" && !legacyTopk) {
    throw new DataError(
      `${cfg.path}: field "architecture" = "${arch}" is not supported; Arbor imports SAELens ` +
        `TopK SAEs only ("topk", or "standard" with activation_fn_str "topk")`,
    );
  }
  if (cfg.optBool("rescale_acts_by_decoder_norm", false)) {
    throw new DataError(
      `${cfg.path}: field "rescale_acts_by_decoder_norm" = true is not supported; ` +
        "fold the decoder norms into W_enc/W_dec first",
    );
  }
  const kwargs = cfg.object("activation_fn_kwargs");
  const k = cfg.has("k")
    ? cfg.int("k", 1)
    : kwargs?.has("k")
    ? kwargs.int("k", 1)
    : cfg.int("k", 1, "the TopK size; SAELens stores it as k or activation_fn_kwargs.k");
  try {
    return makeConfig({ arch: "topk", dIn: d, layers: [n], k, auxK: 0 }, cfg.path);
  } catch (e) {
    throw new DataError((e as Error).message);
  }
}

function normalization(cfg: JsonFile): Normalization {
  const v = cfg.optString("normalize_activations", "none");
  if (v === "none" || v === "layer_norm") return v;
  throw new DataError(
    `${cfg.path}: field "normalize_activations" = "${v}" is not supported ` +
      `(Arbor reproduces "none" and "layer_norm")`,
  );
}
