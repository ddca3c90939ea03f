/**
 * Import of EleutherAI sparsify SAEs: a folder with `cfg.json` (SparseCoderConfig fields plus
 * `d_in`) and `sae.safetensors` (`encoder.weight` [n, d], `encoder.bias` [n], `W_dec` [n, d],
 * `b_dec` [d]). Their formula (sparse_coder.py / fused_encoder.py), on raw activations:
 *   pre = relu(encoder.weight · (x − b_dec) + encoder.bias); keep the k largest;
 *   x̂ = Σ val·W_dec[idx] + b_dec.
 * Taking the top k of relu(pre) equals our TopK with val = max(pre, 0) except for which
 * zero-valued slots are listed, which changes no output. Supported: activation "topk" with no
 * skip connection and transcode = false; anything else is refused with the field named.
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import { makeConfig } from "../sae/config.ts";
import { readSafetensors } from "./safetensors.ts";
import { readJsonFile } from "./json_file.ts";
import { expectShape, type ForeignSae } from "./foreign_sae.ts";

/** sparsify config file name. */
export const SPARSIFY_CFG = "cfg.json";
/** sparsify weights file name. */
export const SPARSIFY_WEIGHTS = "sae.safetensors";

/** Read a sparsify SAE folder for inference (its encoder bias is kept). */
export async function readSparsify(dir: string): Promise<ForeignSae> {
  const cfg = await readJsonFile(join(dir, SPARSIFY_CFG));
  const d = cfg.int("d_in", 1, "the input width");
  const activation = cfg.optString("activation", "topk");
  if (activation !== "topk") {
    throw new DataError(
      `${cfg.path}: field "activation" = "${activation}" is not supported; Arbor imports ` +
        `sparsify TopK SAEs only`,
    );
  }
  for (const key of ["transcode", "skip_connection"]) {
    if (cfg.optBool(key, false)) {
      throw new DataError(
        `${cfg.path}: field "${key}" = true is not supported (an SAE reconstructs its own ` +
          "input with no skip path); Arbor imports plain sparse autoencoders",
      );
    }
  }
  const k = cfg.int("k", 1, "the number of active latents");
  const wpath = join(dir, SPARSIFY_WEIGHTS);
  const st = await readSafetensors(wpath);
  const enc = st.info("encoder.weight").shape;
  const latents = cfg.has("num_latents") ? cfg.int("num_latents", 0) : 0;
  const n = latents > 0
    ? latents
    : d * cfg.int("expansion_factor", 1, "or num_latents: the number of latents");
  expectShape(wpath, "encoder.weight", enc, [n, d]);
  expectShape(wpath, "encoder.bias", st.info("encoder.bias").shape, [n]);
  expectShape(wpath, "W_dec", st.info("W_dec").shape, [n, d]);
  expectShape(wpath, "b_dec", st.info("b_dec").shape, [d]);
  let config;
  try {
    config = makeConfig({ arch: "topk", dIn: d, layers: [n], k, auxK: 0 }, cfg.path);
  } catch (e) {
    throw new DataError((e as Error).message);
  }
  return {
    source: dir,
    format: "sparsify",
    config,
    encW: st.f32("encoder.weight").slice(),
    bEnc: st.f32("encoder.bias").slice(),
    decW: st.f32("W_dec").slice(),
    bDec: st.f32("b_dec").slice(),
    applyBDec: true,
    normalize: "none",
    parents: [],
    threshold: -1,
    info: {},
  };
}
