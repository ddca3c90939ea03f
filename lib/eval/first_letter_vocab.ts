/**
 * The first-letter task's vocabulary and in-context prompts (paper App. D.1; Chanin et al.
 * 2024 as packaged by SAEBench's absorption eval).
 *
 * Vocabulary (SAEBench `get_alpha_tokens`): every token of the model's tokenizer whose text
 * is letters only, optionally after one leading space ("Ġ" in GPT-2's byte-level BPE, which
 * maps ASCII letters to themselves). Its class is the first letter, lower-cased.
 *
 * Prompt (SAEBench defaults): `maxIclExamples` examples drawn from the same split without
 * the query word, each "{word} has the first letter: {LETTER}", joined by "\n", then the
 * query "{word} has the first letter:". The model sees <|endoftext|> first (TransformerLens
 * prepends BOS). Token ids are assembled piece by piece — the word's own token id, then the
 * fixed pieces tokenized once — so every prompt has the same length and the query word sits
 * at a known position (SAEBench reads position −6 of the same string: the word token).
 */
import { join } from "node:path";
import { DataError } from "../errors.ts";
import { Rng } from "../util/rng.ts";

/** The 26 classes, in order. */
export const LETTERS = "abcdefghijklmnopqrstuvwxyz";
/** In-context examples before the query (SAEBench FeatureAbsorptionCalculator / probe data: 10). */
export const MAX_ICL_EXAMPLES = 10;
/** The prompt template after the word (SAEBench AbsorptionEvalConfig.prompt_template). */
export const PROMPT_SUFFIX = " has the first letter:";
/** Share of the vocabulary the probes train on; the rest is the test split (SAEBench: 0.8). */
export const TRAIN_FRACTION = 0.8;

/** One vocabulary word. */
export interface VocabWord {
  /** Token id. */
  id: number;
  /** Decoded text (a leading space kept). */
  text: string;
  /** Class 0..25 (first letter). */
  letter: number;
}

/** GPT-2 byte-level BPE marks a leading space with this character. */
const SPACE_MARK = "Ġ";

/** Alphabetic tokens of a BPE vocabulary (token string → id), sorted by id. */
export function alphabeticVocab(
  vocab: Record<string, number>,
  options: { minLength?: number } = {},
): VocabWord[] {
  const minLength = options.minLength ?? 1;
  const out: VocabWord[] = [];
  for (const [tok, id] of Object.entries(vocab)) {
    const body = tok.startsWith(SPACE_MARK) ? tok.slice(SPACE_MARK.length) : tok;
    if (body.length < minLength || !/^[A-Za-z]+$/.test(body)) continue;
    out.push({
      id,
      text: (body === tok ? "" : " ") + body,
      letter: LETTERS.indexOf(body[0].toLowerCase()),
    });
  }
  return out.sort((a, b) => a.id - b.id);
}

/** Read the BPE vocabulary (model.vocab) of `<dir>/tokenizer.json`. */
export async function readTokenizerVocab(dir: string): Promise<Record<string, number>> {
  const path = join(dir, "tokenizer.json");
  let raw;
  try {
    raw = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new DataError(
      `${path}: cannot read the tokenizer (${(e as Error).message}); the absorption metric ` +
        "needs the model folder's tokenizer.json",
    );
  }
  const vocab = raw?.model?.vocab;
  if (!vocab || typeof vocab !== "object" || Array.isArray(vocab)) {
    throw new DataError(
      `${path}: no model.vocab object; the absorption metric needs a BPE tokenizer.json (GPT-2's)`,
    );
  }
  return vocab as Record<string, number>;
}

/** Seeded Fisher–Yates shuffle (a copy). */
export function shuffled<T>(items: readonly T[], rng: Rng): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Seeded train/test split of the words (SAEBench: shuffle, first 80% train). */
export function splitVocab(
  words: readonly VocabWord[],
  seed: number,
  trainFraction = TRAIN_FRACTION,
): { train: VocabWord[]; test: VocabWord[] } {
  const s = shuffled(words, new Rng(seed));
  const cut = Math.floor(s.length * trainFraction);
  return { train: s.slice(0, cut), test: s.slice(cut) };
}

/** Token ids of the fixed prompt pieces. */
export interface PromptPieces {
  bos: number;
  /** " has the first letter:" */
  suffix: number[];
  /** " A" .. " Z" (one sequence per letter). */
  answers: number[][];
  /** "\n" */
  separator: number[];
}

/** Tokenize the fixed pieces once with `encode`. */
export function promptPieces(encode: (text: string) => number[], bos: number): PromptPieces {
  return {
    bos,
    suffix: encode(PROMPT_SUFFIX),
    answers: [...LETTERS].map((l) => encode(" " + l.toUpperCase())),
    separator: encode("\n"),
  };
}

/** One prompt: token ids and the position of the query word. */
export interface Prompt {
  tokens: number[];
  wordPos: number;
}

/** The prompt for `word` with the given in-context examples. */
export function buildPrompt(word: VocabWord, examples: VocabWord[], p: PromptPieces): Prompt {
  const tokens = [p.bos];
  for (const ex of examples) {
    tokens.push(ex.id, ...p.suffix, ...p.answers[ex.letter], ...p.separator);
  }
  const wordPos = tokens.length;
  tokens.push(word.id, ...p.suffix);
  return { tokens, wordPos };
}

/** Prompts for every word of a split, examples drawn (seeded) from the same split. */
export function buildPrompts(
  words: readonly VocabWord[],
  pool: readonly VocabWord[],
  p: PromptPieces,
  options: { seed: number; maxIclExamples?: number },
): Prompt[] {
  const m = Math.min(options.maxIclExamples ?? MAX_ICL_EXAMPLES, Math.max(0, pool.length - 1));
  const rng = new Rng(options.seed);
  return words.map((w) => {
    // m distinct examples by rejection (m ≪ pool), never the query word (no contamination).
    const chosen = new Set<number>();
    const picked: VocabWord[] = [];
    while (picked.length < m) {
      const i = rng.int(pool.length);
      if (chosen.has(i) || pool[i].id === w.id) continue;
      chosen.add(i);
      picked.push(pool[i]);
    }
    return buildPrompt(w, picked, p);
  });
}
