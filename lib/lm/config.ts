/**
 * GPT-2 family configuration, read from a Hugging Face `config.json` (GPT2Config fields).
 * Covers gpt2, gpt2-medium, gpt2-large, gpt2-xl and distilgpt2: they differ only in these numbers.
 */
import { DataError } from "../errors.ts";
import { MAX_HEAD_DIM } from "./kernels.ts";

/** The numbers that define a GPT-2 forward pass. */
export interface Gpt2Config {
  /** Number of transformer blocks. */
  nLayer: number;
  /** Attention heads per block. */
  nHead: number;
  /** Residual stream width d. */
  nEmbd: number;
  /** MLP hidden width (HF `n_inner`, null means 4·d). */
  nInner: number;
  /** Longest context (position-embedding rows). */
  nPositions: number;
  /** Vocabulary size (token-embedding rows). */
  vocabSize: number;
  /** Layer-norm epsilon. */
  layerNormEpsilon: number;
  /** End-of-text token id (GPT-2 uses it as BOS and EOS). */
  eosTokenId: number;
}

/** HF default layer-norm epsilon of GPT2Config. */
const DEFAULT_LN_EPS = 1e-5;
/** GPT-2's <|endoftext|> id, HF GPT2Config's default bos/eos. */
const GPT2_EOS = 50256;
/** Activation names HF uses for the tanh-approximated GELU GPT-2 was trained with. */
const TANH_GELU = ["gelu_new", "gelu_pytorch_tanh", "gelu_fast"];

function positiveInt(raw: Record<string, unknown>, key: string, file: string): number {
  const v = raw[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw new DataError(
      `${file}: field "${key}" must be a positive integer (got ${JSON.stringify(v)}); ` +
        `is this a GPT-2 family config.json?`,
    );
  }
  return v;
}

/** Validate a parsed `config.json` object; `file` names it in errors. */
export function parseGpt2Config(raw: unknown, file = "config.json"): Gpt2Config {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new DataError(`${file}: expected a JSON object with GPT-2 config fields`);
  }
  const r = raw as Record<string, unknown>;
  if (r.model_type !== undefined && r.model_type !== "gpt2") {
    throw new DataError(
      `${file}: model_type "${r.model_type}" is not supported; arbor runs GPT-2 family models ` +
        `(model_type "gpt2": gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2)`,
    );
  }
  const act = r.activation_function ?? "gelu_new";
  if (typeof act !== "string" || !TANH_GELU.includes(act)) {
    throw new DataError(
      `${file}: activation_function "${act}" is not supported (expected one of ${
        TANH_GELU.join(", ")
      })`,
    );
  }
  const nEmbd = positiveInt(r, "n_embd", file);
  const nHead = positiveInt(r, "n_head", file);
  if (nEmbd % nHead !== 0) {
    throw new DataError(`${file}: n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  }
  if (nEmbd / nHead > MAX_HEAD_DIM) {
    throw new DataError(
      `${file}: head width ${nEmbd / nHead} exceeds the attention kernel's limit ${MAX_HEAD_DIM}`,
    );
  }
  const nInner = r.n_inner === undefined || r.n_inner === null
    ? 4 * nEmbd
    : positiveInt(r, "n_inner", file);
  const eps = r.layer_norm_epsilon ?? DEFAULT_LN_EPS;
  if (typeof eps !== "number" || !(eps > 0)) {
    throw new DataError(`${file}: layer_norm_epsilon must be a positive number (got ${eps})`);
  }
  const eos = r.eos_token_id ?? GPT2_EOS;
  return {
    nLayer: positiveInt(r, "n_layer", file),
    nHead,
    nEmbd,
    nInner,
    nPositions: positiveInt(r, "n_positions", file),
    vocabSize: positiveInt(r, "vocab_size", file),
    layerNormEpsilon: eps,
    eosTokenId: typeof eos === "number" ? eos : GPT2_EOS,
  };
}

/** Read and validate `<dir>/config.json`. */
export async function readGpt2Config(dir: string): Promise<Gpt2Config> {
  const file = `${dir}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new DataError(
      `${file}: cannot read the model config (${(e as Error).message}); ` +
        `a model folder needs config.json, model.safetensors and tokenizer.json`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new DataError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return parseGpt2Config(raw, file);
}
