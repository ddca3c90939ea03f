/**
 * GPT-2 tokenizer through transformers.js (`AutoTokenizer` over the folder's tokenizer.json),
 * imported lazily so commands that never tokenize do not pay for loading it. Loading is local
 * only: hub ids are first fetched by lib/lm/model_files.ts, so transformers.js never goes online.
 */
import { isAbsolute, resolve } from "node:path";
import { DataError } from "../errors.ts";

/** What extract needs from a tokenizer. */
export interface Tokenizer {
  /** Token ids of `text` (no special tokens added). */
  encode(text: string): number[];
  /** Id of <|endoftext|> (GPT-2's BOS and EOS). */
  eosTokenId: number;
  /** Folder it was loaded from. */
  source: string;
}

/** Load the tokenizer of a local model folder (tokenizer.json + tokenizer_config.json). */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const { AutoTokenizer, env } = await import("@huggingface/transformers");
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = "";
  const path = isAbsolute(dir) ? dir : resolve(dir);
  let tok;
  try {
    tok = await AutoTokenizer.from_pretrained(path);
  } catch (e) {
    throw new DataError(
      `${dir}: cannot load the tokenizer (${(e as Error).message}); the folder needs the model's ` +
        `tokenizer.json and tokenizer_config.json`,
    );
  }
  const special = tok.encode("<|endoftext|>", { add_special_tokens: false });
  const eos = tok.eos_token_id ?? (special.length === 1 ? special[0] : undefined);
  if (typeof eos !== "number") {
    throw new DataError(
      `${dir}: tokenizer has no end-of-text token (<|endoftext|>); is it GPT-2's?`,
    );
  }
  return {
    encode: (text: string) => tok.encode(text, { add_special_tokens: false }),
    eosTokenId: eos,
    source: dir,
  };
}
