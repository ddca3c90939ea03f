/**
 * Token windows for `extract`: documents are tokenized and joined GPT-2 style, each preceded by
 * <|endoftext|> (so EOS separates documents and the first one starts with it as BOS), and the
 * stream is cut into consecutive windows of `context` tokens. A partial window at the end is
 * dropped. Every token carries its document index and its position inside its window.
 */
import { DataError } from "../errors.ts";
import type { Document } from "./corpus.ts";

/** One window of `context` tokens. */
export interface Window {
  /** Index of the window in the stream (0, 1, ...). */
  index: number;
  tokens: Uint32Array;
  /** Document index of each token (the EOS before a document belongs to it). */
  docIds: Uint32Array;
}

/** Cut tokenized documents into windows; `encode` and `eos` come from the tokenizer. */
export async function* tokenWindows(
  docs: AsyncIterable<Document>,
  encode: (text: string) => number[],
  eos: number,
  context: number,
): AsyncGenerator<Window> {
  if (!Number.isInteger(context) || context < 1) {
    throw new DataError(`--context must be a positive integer, got ${context}`);
  }
  let tokens = new Uint32Array(context);
  let docIds = new Uint32Array(context);
  let fill = 0;
  let index = 0;
  let doc = 0;
  let sawText = false;
  for await (const d of docs) {
    if (d.text.trim() !== "") {
      sawText = true;
      const ids = [eos, ...encode(d.text)];
      for (const id of ids) {
        tokens[fill] = id;
        docIds[fill] = doc;
        if (++fill === context) {
          yield { index: index++, tokens, docIds };
          tokens = new Uint32Array(context);
          docIds = new Uint32Array(context);
          fill = 0;
        }
      }
    }
    doc++;
  }
  if (!sawText) {
    throw new DataError(
      "the corpus holds no text (every input document is empty); give non-empty text files, folders or .jsonl",
    );
  }
  if (index === 0) {
    throw new DataError(
      `the corpus holds fewer than --context ${context} tokens (${fill}); give more text or a smaller --context`,
    );
  }
}
