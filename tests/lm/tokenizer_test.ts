/** The fixture tokenizer (transformers.js over tokenizer.json) gives GPT-2's ids. */
import assert from "node:assert/strict";
import { loadTokenizer } from "../../lib/lm/tokenizer.ts";
import gpt3Encoder from "gpt-3-encoder";

const FIXTURE = new URL("../../fixtures/tiny-gpt2", import.meta.url).pathname;

/** Strings with ids known from GPT-2 (OpenAI's encoder). */
const KNOWN: [string, number[]][] = [
  ["Hello world", [15496, 995]],
  ["Hello, world!", [15496, 11, 995, 0]],
  [" the", [262]],
  ["The", [464]],
];

/** Strings that exercise the byte-level pre-tokenizer: contractions, digits, unicode, spaces. */
const MIXED = [
  "The quick brown fox jumps over the lazy dog.",
  "I'm sure they'll say it's 1,234.56 dollars -- or isn't it?",
  "  leading spaces and\ttabs\nnewlines\n\n",
  "naïve café — 東京 🤖 emoji",
  "Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election",
];

Deno.test("tokenizer ids equal GPT-2's (known ids, and the gpt-3-encoder package's BPE)", async () => {
  const tok = await loadTokenizer(FIXTURE);
  for (const [text, ids] of KNOWN) assert.deepEqual(tok.encode(text), ids, text);
  for (const text of MIXED) assert.deepEqual(tok.encode(text), gpt3Encoder.encode(text), text);
  assert.equal(tok.eosTokenId, 50256);
  assert.deepEqual(tok.encode("a<|endoftext|>b"), [64, 50256, 65]);
});

Deno.test("a folder without tokenizer files is a clear error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(loadTokenizer(dir), /cannot load the tokenizer .*tokenizer\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
