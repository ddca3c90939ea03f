/**
 * Model activations for the first-letter task: the alphabetic vocabulary of the model's
 * tokenizer, split (seeded) into train and test words, one in-context prompt per word
 * (first_letter_vocab.ts), run through the GPT-2 forward pass, the activation at `hook`
 * read at the query word's position.
 */
import type { Gpt2Model } from "../lm/model.ts";
import { hookName, type HookPoint } from "../lm/hooks.ts";
import { loadTokenizer } from "../lm/tokenizer.ts";
import { DataError } from "../errors.ts";
import { Rng } from "../util/rng.ts";
import type { Gpu } from "../gpu/device.ts";
import type { LogRegOptions } from "./logreg.ts";
import type { L1ProbeOptions } from "./first_letter_sparse.ts";
import {
  DEFAULT_FIRST_LETTER,
  type FirstLetterInput,
  firstLetterMetric,
  type FirstLetterOptions,
  type FirstLetterResult,
  type LetterSplit,
} from "./first_letter.ts";
import {
  alphabeticVocab,
  buildPrompts,
  MAX_ICL_EXAMPLES,
  type Prompt,
  PROMPT_SUFFIX,
  promptPieces,
  readTokenizerVocab,
  shuffled,
  splitVocab,
  TRAIN_FRACTION,
  type VocabWord,
} from "./first_letter_vocab.ts";

/** Settings of the prompt data. */
export interface FirstLetterDataOptions {
  seed: number;
  /** Use a seeded sample of this many vocabulary words (0: the whole vocabulary). */
  maxWords: number;
  /** Shortest word body in letters (SAEBench: 1). */
  minLength: number;
  maxIclExamples: number;
  trainFraction: number;
  /** Prompts per forward pass. */
  promptsPerPass: number;
}

/** Defaults: SAEBench's vocabulary and prompts. */
export const DEFAULT_FIRST_LETTER_DATA: FirstLetterDataOptions = {
  seed: 0,
  maxWords: 0,
  minLength: 1,
  maxIclExamples: MAX_ICL_EXAMPLES,
  trainFraction: TRAIN_FRACTION,
  promptsPerPass: 64,
};

/** The prompt data with its activations. */
export interface FirstLetterData {
  train: LetterSplit;
  test: LetterSplit;
  /** Alphabetic tokens in the tokenizer (before sampling). */
  vocabSize: number;
  /** Tokens per prompt. */
  promptLength: number;
}

/** Activations [N, d] at each prompt's word position. */
async function runPrompts(
  model: Gpt2Model,
  hook: HookPoint,
  prompts: Prompt[],
  perPass: number,
): Promise<Float32Array> {
  const d = model.config.nEmbd;
  const out = new Float32Array(prompts.length * d);
  if (prompts.length === 0) return out;
  const seq = prompts[0].tokens.length;
  const name = hookName(hook);
  for (let p0 = 0; p0 < prompts.length; p0 += perPass) {
    const batch = prompts.slice(p0, p0 + perPass);
    const tokens = new Uint32Array(batch.length * seq);
    batch.forEach((p, i) => tokens.set(p.tokens, i * seq));
    const res = await model.forward({ tokens, seq, capture: [hook] });
    const acts = res.activations.get(name)!;
    batch.forEach((p, i) => {
      const row = i * seq + p.wordPos;
      out.set(acts.subarray(row * d, (row + 1) * d), (p0 + i) * d);
    });
  }
  return out;
}

function toSplit(words: VocabWord[], x: Float32Array): LetterSplit {
  return { x, letters: Int32Array.from(words, (w) => w.letter), words: words.map((w) => w.text) };
}

/** Build the vocabulary and prompts from the model folder `modelDir` and run them through `model`. */
export async function firstLetterData(
  model: Gpt2Model,
  hook: HookPoint,
  modelDir: string,
  options: Partial<FirstLetterDataOptions> = {},
): Promise<FirstLetterData> {
  const o = { ...DEFAULT_FIRST_LETTER_DATA, ...options };
  const vocab = alphabeticVocab(await readTokenizerVocab(modelDir), { minLength: o.minLength });
  if (vocab.length < 2) {
    throw new DataError(
      `${modelDir}/tokenizer.json: only ${vocab.length} alphabetic tokens; the absorption metric ` +
        "needs a natural-language tokenizer (GPT-2's)",
    );
  }
  const words = o.maxWords > 0 && o.maxWords < vocab.length
    ? shuffled(vocab, new Rng(o.seed ^ 0x5eed)).slice(0, o.maxWords).sort((a, b) => a.id - b.id)
    : vocab;
  const { train, test } = splitVocab(words, o.seed, o.trainFraction);
  if (train.length < 2 || test.length < 1) {
    throw new DataError(
      `absorption: ${words.length} words leave no train/test split; raise --absorption-words`,
    );
  }
  const tok = await loadTokenizer(modelDir);
  const pieces = promptPieces(tok.encode, tok.eosTokenId);
  const trainPrompts = buildPrompts(train, train, pieces, {
    seed: o.seed + 1,
    maxIclExamples: o.maxIclExamples,
  });
  const testPrompts = buildPrompts(test, test, pieces, {
    seed: o.seed + 2,
    maxIclExamples: o.maxIclExamples,
  });
  const len = trainPrompts[0].tokens.length;
  if (len > model.config.nPositions) {
    throw new DataError(
      `absorption: prompts of ${len} tokens exceed the model's ${model.config.nPositions} ` +
        "positions; use fewer in-context examples",
    );
  }
  const xTrain = await runPrompts(model, hook, trainPrompts, o.promptsPerPass);
  const xTest = await runPrompts(model, hook, testPrompts, o.promptsPerPass);
  return {
    train: toSplit(train, xTrain),
    test: toSplit(test, xTest),
    vocabSize: vocab.length,
    promptLength: len,
  };
}

/** Parameters recorded with the absorption result. */
export interface AbsorptionParams {
  model: string;
  hook: string;
  seed: number;
  promptTemplate: string;
  maxIclExamples: number;
  trainFraction: number;
  /** Alphabetic tokens in the tokenizer, and how many were sampled (0: all). */
  vocabSize: number;
  maxWords: number;
  trainWords: number;
  testWords: number;
  promptLength: number;
  maxK: number;
  f1Jump: number;
  minProbeF1: number;
  probe: LogRegOptions;
  sparse: L1ProbeOptions;
}

/** The whole first-letter metric with a loaded model: prompts, activations, probes, scores. */
export async function firstLetterAbsorption(
  gpu: Gpu | null,
  model: Gpt2Model,
  where: { hook: HookPoint; modelDir: string; modelName: string },
  sae: Omit<FirstLetterInput, "train" | "test">,
  options: { data?: Partial<FirstLetterDataOptions>; metric?: Partial<FirstLetterOptions> } = {},
): Promise<FirstLetterResult & { params: AbsorptionParams }> {
  const data = await firstLetterData(model, where.hook, where.modelDir, options.data);
  const dOpt = { ...DEFAULT_FIRST_LETTER_DATA, ...options.data };
  const mOpt = { ...DEFAULT_FIRST_LETTER, ...options.metric };
  const result = await firstLetterMetric(gpu, { ...sae, train: data.train, test: data.test }, mOpt);
  return {
    ...result,
    params: {
      model: where.modelName,
      hook: hookName(where.hook),
      seed: mOpt.seed,
      promptTemplate: "{word}" + PROMPT_SUFFIX,
      maxIclExamples: dOpt.maxIclExamples,
      trainFraction: dOpt.trainFraction,
      vocabSize: data.vocabSize,
      maxWords: dOpt.maxWords,
      trainWords: data.train.letters.length,
      testWords: data.test.letters.length,
      promptLength: data.promptLength,
      maxK: mOpt.maxK,
      f1Jump: mOpt.f1Jump,
      minProbeF1: mOpt.minProbeF1,
      probe: { ...mOpt.probe, seed: mOpt.seed },
      sparse: { ...mOpt.sparse, seed: mOpt.seed },
    },
  };
}
