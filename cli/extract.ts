/** `arbor extract`: run a language model over a corpus and store its activations. */
import { type CommandSpec, type ParsedFlags, requireString, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { getGpu } from "../lib/gpu/device.ts";
import { DEFAULT_BATCH, DEFAULT_CONTEXT, extract, progressLine } from "../lib/lm/extract.ts";
import { DEFAULT_CONNECT_TIMEOUT_MS } from "../lib/lm/model_files.ts";

/** Where the paper reads GPT-2 small: the residual stream entering block 5 (paper §5). */
const PAPER_HOOK = "resid_pre.5";

/** Flags of `extract`. */
export const spec: CommandSpec = {
  name: "extract",
  summary: "run a language model over a corpus and store its activations",
  usage:
    "deno run -A cli/main.ts extract --model DIR|HUB_ID --out DIR [flags] [TEXT_FILES_OR_FOLDERS...]",
  flags: {
    model: {
      type: "string",
      help:
        "GPT-2 family model: a local folder (config.json, model.safetensors, tokenizer.json) or a hub id (gpt2, distilgpt2, openai-community/gpt2-medium)",
    },
    out: { type: "string", short: "o", help: "output folder for the activation store" },
    hook: {
      type: "string",
      default: PAPER_HOOK,
      help: "hook point: resid_pre.L, attn_out.L, mlp_out.L or resid_post.L",
    },
    context: { type: "int", default: DEFAULT_CONTEXT, help: "tokens per window" },
    "max-tokens": { type: "int", default: 1_000_000, help: "stop after this many tokens" },
    batch: { type: "int", default: DEFAULT_BATCH, help: "windows per forward pass" },
    dtype: { type: "string", default: "f16", help: "stored element type: f16 or f32" },
    "text-field": {
      type: "string",
      default: "text",
      help: "JSON field holding the text in .jsonl inputs",
    },
    "shard-tokens": { type: "int", help: "rows per shard (default: 64 MiB shards)" },
    resume: { type: "boolean", help: "continue an interrupted extract in --out" },
    overwrite: { type: "boolean", help: "replace a dataset already in --out" },
    offline: { type: "boolean", help: "never use the network (model from a folder or the cache)" },
    "cache-dir": {
      type: "string",
      help: "download cache for hub models (default $ARBOR_CACHE or ~/.cache/arbor/models)",
    },
    "hub-timeout": {
      type: "number",
      default: DEFAULT_CONNECT_TIMEOUT_MS / 1000,
      help: "seconds to wait for the hub to answer before giving up",
    },
  },
  positionals: true,
  examples: [
    "deno run -A cli/main.ts extract --model fixtures/tiny-gpt2 --hook resid_pre.1 --out runs/tiny-acts --max-tokens 20000",
    "deno run -A cli/main.ts extract --model gpt2 --out runs/gpt2-l5 --max-tokens 10000000   # Brown Corpus",
    "deno run -A cli/main.ts extract --model ~/models/gpt2 --offline --out runs/web data/web.jsonl --text-field content",
    "deno run -A cli/main.ts extract --model gpt2 --out runs/gpt2-l5 --resume   # after an interruption",
  ],
};

function positive(flags: ParsedFlags, name: string): number {
  const v = flags[name] as number;
  if (!(v > 0)) throw new UsageError(`extract: --${name} must be positive, got ${v}`);
  return v;
}

/** Run the extraction with a progress line per batch on stderr. */
export const command: Command = {
  spec,
  async run({ flags, positionals }) {
    const dtype = flags.dtype;
    if (dtype !== "f16" && dtype !== "f32") {
      throw new UsageError(`extract: --dtype must be f16 or f32, got "${dtype}"`);
    }
    const quiet = Boolean(flags.quiet);
    const gpu = await getGpu({ quiet });
    const isTty = Deno.stderr.isTerminal();
    let lastPrint = 0;
    const manifest = await extract(gpu, {
      model: requireString(flags, "model", "extract"),
      out: requireString(flags, "out", "extract"),
      hook: flags.hook as string,
      inputs: positionals,
      textField: flags["text-field"] as string,
      context: positive(flags, "context"),
      maxTokens: positive(flags, "max-tokens"),
      batch: positive(flags, "batch"),
      dtype,
      shardTokens: flags["shard-tokens"] === undefined
        ? undefined
        : positive(flags, "shard-tokens"),
      resume: Boolean(flags.resume),
      overwrite: Boolean(flags.overwrite),
      download: {
        offline: Boolean(flags.offline),
        cacheDir: flags["cache-dir"] as string | undefined,
        timeoutMs: positive(flags, "hub-timeout") * 1000,
      },
      progress: quiet ? undefined : (p) => {
        const now = performance.now();
        if (now - lastPrint < 1000 && p.done < p.target) return;
        lastPrint = now;
        if (isTty) Deno.stderr.writeSync(new TextEncoder().encode(`\r${progressLine(p)}   `));
        else console.error(progressLine(p));
      },
    });
    if (isTty && !quiet) console.error();
    console.log(
      `extract: wrote ${manifest.total_tokens} rows of ${manifest.d_in} (${manifest.dtype}) at ` +
        `${manifest.provenance.hook} in ${manifest.shards.length} shard(s) to ${flags.out}`,
    );
    return 0;
  },
};
