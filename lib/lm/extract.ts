/**
 * The `extract` engine: run a GPT-2 family model over a corpus and store the activations at one
 * hook as an activation store (lib/store, DESIGN §3) with token files and provenance.
 *
 * Deterministic: the same corpus, tokenizer and context give the same windows in the same order,
 * so an interrupted run resumed with `resume` skips the `rowsDone` rows already stored and
 * writes byte-identical shards to an uninterrupted run.
 */
import type { Gpu } from "../gpu/device.ts";
import { ActivationWriter } from "../store/writer.ts";
import type { Dtype, Manifest } from "../store/manifest.ts";
import { DataError } from "../errors.ts";
import { readGpt2Config } from "./config.ts";
import { loadGpt2Model } from "./load.ts";
import { hookName, parseHook } from "./hooks.ts";
import { resolveModel, type ResolveOptions } from "./model_files.ts";
import { loadTokenizer } from "./tokenizer.ts";
import { corpusName, readCorpus } from "./corpus.ts";
import { tokenWindows, type Window } from "./windows.ts";

/** Default window length in tokens (issue #6). */
export const DEFAULT_CONTEXT = 128;
/** Default number of windows per forward pass. */
export const DEFAULT_BATCH = 8;

/** Everything `extract` needs; see cli/extract.ts for the user-facing flags. */
export interface ExtractOptions {
  /** Local model folder or hub id. */
  model: string;
  /** Output dataset folder. */
  out: string;
  /** Hook name, e.g. "resid_pre.5". */
  hook: string;
  /** Text inputs (files, folders, .jsonl); empty = the Brown Corpus. */
  inputs: string[];
  /** JSON field of the text in .jsonl inputs. */
  textField?: string;
  /** Window length in tokens. */
  context?: number;
  /** Stop after this many tokens (rows). */
  maxTokens: number;
  /** Windows per forward pass. */
  batch?: number;
  /** Stored element type. */
  dtype?: Dtype;
  /** Rows per shard (default: the store's 64 MiB shards). */
  shardTokens?: number;
  /** Continue an interrupted dataset. */
  resume?: boolean;
  /** Replace a dataset already in `out`. */
  overwrite?: boolean;
  /** Model download settings (offline, cache, hub URL, timeout). */
  download?: ResolveOptions;
  /** Progress lines (default: none). */
  progress?: (p: ExtractProgress) => void;
}

/** A progress report after each batch. */
export interface ExtractProgress {
  /** Rows stored so far (this run and earlier ones). */
  done: number;
  /** Rows the run aims for (may stop early when the corpus ends). */
  target: number;
  /** Tokens per second of this run. */
  tokensPerSecond: number;
  /** Estimated seconds left. */
  etaSeconds: number;
}

/** Format a progress report as one line. */
export function progressLine(p: ExtractProgress): string {
  const pct = p.target ? ((100 * p.done) / p.target).toFixed(1) : "0";
  const eta = Number.isFinite(p.etaSeconds) ? `${Math.round(p.etaSeconds)} s` : "?";
  return `extract: ${p.done}/${p.target} tokens (${pct}%), ${
    Math.round(p.tokensPerSecond)
  } tok/s, ETA ${eta}`;
}

/** Run the extraction; returns the closed dataset's manifest. */
export async function extract(gpu: Gpu, options: ExtractOptions): Promise<Manifest> {
  const context = options.context ?? DEFAULT_CONTEXT;
  const batch = options.batch ?? DEFAULT_BATCH;
  if (!Number.isInteger(options.maxTokens) || options.maxTokens < 1) {
    throw new DataError(`--max-tokens must be a positive integer, got ${options.maxTokens}`);
  }
  if (!Number.isInteger(batch) || batch < 1) {
    throw new DataError(`--batch must be a positive integer, got ${batch}`);
  }
  const dir = await resolveModel(options.model, options.download);
  const config = await readGpt2Config(dir);
  const hook = parseHook(options.hook, config.nLayer);
  if (context > config.nPositions) {
    throw new DataError(
      `--context ${context} exceeds the model's ${config.nPositions} positions (${dir}/config.json)`,
    );
  }
  const tokenizer = await loadTokenizer(dir);
  const writer = await ActivationWriter.create(options.out, {
    dIn: config.nEmbd,
    dtype: options.dtype ?? "f16",
    shardTokens: options.shardTokens,
    tokens: true,
    resume: options.resume,
    overwrite: options.overwrite,
    provenance: {
      model: options.model,
      hook: hookName(hook),
      layer: hook.layer,
      context,
      tokenizer: `transformers.js AutoTokenizer (${options.model}/tokenizer.json)`,
      corpus: corpusName(options.inputs),
      ...(options.textField ? { text_field: options.textField } : {}),
      max_tokens: options.maxTokens,
      windows: "documents each preceded by <|endoftext|>, concatenated, cut into --context windows",
    },
  });
  const skip = writer.rowsDone;
  const target = options.maxTokens;
  if (skip >= target) return await writer.close();
  const model = await loadGpt2Model(gpu, dir);
  try {
    const windows = tokenWindows(
      readCorpus(options.inputs, { textField: options.textField }),
      tokenizer.encode,
      tokenizer.eosTokenId,
      context,
    );
    const t0 = performance.now();
    let done = skip;
    let pending: Window[] = [];
    const run = async () => {
      const first = pending[0].index * context;
      const tokens = new Uint32Array(pending.length * context);
      const docIds = new Uint32Array(pending.length * context);
      pending.forEach((w, i) => {
        tokens.set(w.tokens, i * context);
        docIds.set(w.docIds, i * context);
      });
      pending = [];
      const out = await model.forward({ tokens, seq: context, capture: [hook] });
      const acts = out.activations.get(hookName(hook))!;
      // Rows [from, to) of this batch are new: after what is stored, before the target.
      const from = Math.max(0, skip - first);
      const to = Math.min(tokens.length, target - first);
      const positions = Uint32Array.from({ length: to - from }, (_, i) => (from + i) % context);
      await writer.append(acts.subarray(from * config.nEmbd, to * config.nEmbd), {
        tokenIds: tokens.subarray(from, to),
        docIds: docIds.subarray(from, to),
        positions,
      });
      done = first + to;
      const seconds = (performance.now() - t0) / 1000;
      const rate = (done - skip) / Math.max(seconds, 1e-9);
      options.progress?.({
        done,
        target,
        tokensPerSecond: rate,
        etaSeconds: (target - done) / rate,
      });
    };
    for await (const w of windows) {
      const start = w.index * context;
      if (start >= target) break;
      if (start + context <= skip) continue;
      pending.push(w);
      if (pending.length === batch) await run();
    }
    if (pending.length) await run();
    if (done === skip && skip === 0) throw new DataError("the corpus gave no tokens to extract");
  } finally {
    model.destroy();
  }
  return await writer.close();
}
