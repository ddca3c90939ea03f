/**
 * GPT-2 weights in the Hugging Face layout, checked against the config and widened to f32 on the
 * host. Tensor names follow HF's GPT2Model (`wte.weight`, `h.0.attn.c_attn.weight`, ...), with or
 * without the `transformer.` prefix of GPT2LMHeadModel checkpoints. Conv1D weights are [in, out].
 * The unembedding is tied to `wte` (a `lm_head.weight` in the file is ignored).
 */
import { DataError } from "../errors.ts";
import type { Gpt2Config } from "./config.ts";

/** One tensor of a weights file, as the loader needs it (implemented over lib/format/safetensors). */
export interface TensorEntry {
  /** Safetensors dtype string: "F32", "F16", "BF16", ... */
  dtype: string;
  shape: number[];
  /** Values widened to f32 (throws for dtypes that are not floating point). */
  toF32(): Float32Array;
}

/** A set of named tensors (one safetensors file). */
export interface TensorSource {
  /** File the tensors came from, for error messages. */
  file: string;
  names(): string[];
  get(name: string): TensorEntry | undefined;
}

/** Weights of one transformer block (f32, HF layout). */
export interface Gpt2BlockWeights {
  ln1Gamma: Float32Array; // [d]
  ln1Beta: Float32Array; // [d]
  attnW: Float32Array; // [d, 3d]  c_attn
  attnB: Float32Array; // [3d]
  attnProjW: Float32Array; // [d, d]  attn.c_proj
  attnProjB: Float32Array; // [d]
  ln2Gamma: Float32Array; // [d]
  ln2Beta: Float32Array; // [d]
  fcW: Float32Array; // [d, inner]  mlp.c_fc
  fcB: Float32Array; // [inner]
  projW: Float32Array; // [inner, d]  mlp.c_proj
  projB: Float32Array; // [d]
}

/** All weights of a GPT-2 model (f32, HF layout). */
export interface Gpt2Weights {
  wte: Float32Array; // [vocab, d]
  wpe: Float32Array; // [n_positions, d]
  blocks: Gpt2BlockWeights[];
  lnfGamma: Float32Array; // [d]
  lnfBeta: Float32Array; // [d]
}

/** Pick the name prefix the file uses: "" (GPT2Model) or "transformer." (GPT2LMHeadModel). */
function detectPrefix(source: TensorSource): string {
  if (source.get("wte.weight")) return "";
  if (source.get("transformer.wte.weight")) return "transformer.";
  return "";
}

/** Load and check every tensor of a GPT-2 model; errors name the tensor, file and fix. */
export function loadGpt2Weights(source: TensorSource, config: Gpt2Config): Gpt2Weights {
  const prefix = detectPrefix(source);
  const { nEmbd: d, nInner: inner, vocabSize, nPositions } = config;
  const take = (name: string, shape: number[]): Float32Array => {
    const full = prefix + name;
    const t = source.get(full);
    if (!t) {
      throw new DataError(
        `${source.file}: missing weight tensor "${full}"; the file does not hold a complete ` +
          `Hugging Face GPT-2 model (expected names like ${prefix}h.0.attn.c_attn.weight)`,
      );
    }
    if (t.shape.length !== shape.length || t.shape.some((n, i) => n !== shape[i])) {
      throw new DataError(
        `${source.file}: weight "${full}" has shape [${t.shape}] but config.json implies ` +
          `[${shape}]; config.json and model.safetensors do not belong to the same model`,
      );
    }
    return t.toF32();
  };
  const blocks: Gpt2BlockWeights[] = [];
  for (let l = 0; l < config.nLayer; l++) {
    const p = `h.${l}.`;
    blocks.push({
      ln1Gamma: take(p + "ln_1.weight", [d]),
      ln1Beta: take(p + "ln_1.bias", [d]),
      attnW: take(p + "attn.c_attn.weight", [d, 3 * d]),
      attnB: take(p + "attn.c_attn.bias", [3 * d]),
      attnProjW: take(p + "attn.c_proj.weight", [d, d]),
      attnProjB: take(p + "attn.c_proj.bias", [d]),
      ln2Gamma: take(p + "ln_2.weight", [d]),
      ln2Beta: take(p + "ln_2.bias", [d]),
      fcW: take(p + "mlp.c_fc.weight", [d, inner]),
      fcB: take(p + "mlp.c_fc.bias", [inner]),
      projW: take(p + "mlp.c_proj.weight", [inner, d]),
      projB: take(p + "mlp.c_proj.bias", [d]),
    });
  }
  return {
    wte: take("wte.weight", [vocabSize, d]),
    wpe: take("wpe.weight", [nPositions, d]),
    blocks,
    lnfGamma: take("ln_f.weight", [d]),
    lnfBeta: take("ln_f.bias", [d]),
  };
}
