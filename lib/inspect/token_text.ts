/**
 * Token ids → display text. When the dataset's provenance names a model (a local folder, or
 * a hub id already in the model cache), its tokenizer.json is loaded through transformers.js
 * (imported lazily, local files only) and each id is decoded on its own; otherwise, or when
 * loading fails, tokens are shown as ids ("#464") and `note` says why.
 */
import { isAbsolute, join, resolve } from "node:path";
import type { Provenance } from "../store/manifest.ts";
import { resolveModel } from "../lm/model_files.ts";

/** Turns token ids into display strings. */
export interface TokenLabeler {
  /** Display text of one token (decoded text, or "#id"). */
  label(id: number): string;
  /** Whether labels are decoded text (false: ids). */
  decoded: boolean;
  /** Why tokens are shown as ids, or where the tokenizer came from. */
  note: string;
}

/** A labeler that shows ids. */
export function idLabeler(note: string): TokenLabeler {
  return { label: (id) => `#${id}`, decoded: false, note };
}

async function hasTokenizer(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(join(dir, "tokenizer.json"))).isFile;
  } catch {
    return false;
  }
}

/** The model folder named by `provenance.model`, looked up beside the dataset, then in the cache (never downloaded). */
async function modelFolder(spec: string, dataDir: string): Promise<string | null> {
  const tries = isAbsolute(spec) ? [spec] : [resolve(spec), resolve(dataDir, spec)];
  for (const dir of tries) if (await hasTokenizer(dir)) return dir;
  try {
    return await resolveModel(spec, { offline: true });
  } catch {
    return null;
  }
}

/** The labeler for a dataset: decoded text when its model's tokenizer can be loaded, else ids. */
export async function tokenLabeler(provenance: Provenance, dataDir: string): Promise<TokenLabeler> {
  const spec = provenance.model;
  if (typeof spec !== "string" || spec === "" || spec === "synthetic") {
    return idLabeler("the dataset names no language model; tokens are shown as ids");
  }
  const dir = await modelFolder(spec, dataDir);
  if (!dir) {
    return idLabeler(
      `the tokenizer of ${spec} is not available offline (no folder with tokenizer.json); ` +
        "tokens are shown as ids",
    );
  }
  try {
    const { AutoTokenizer, env } = await import("@huggingface/transformers");
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = "";
    const tok = await AutoTokenizer.from_pretrained(isAbsolute(dir) ? dir : resolve(dir));
    const cache = new Map<number, string>();
    return {
      label(id: number): string {
        let s = cache.get(id);
        if (s === undefined) cache.set(id, s = tok.decode([id]));
        return s;
      },
      decoded: true,
      note: `tokens decoded with ${dir}/tokenizer.json`,
    };
  } catch (e) {
    return idLabeler(
      `cannot load the tokenizer in ${dir} (${(e as Error).message}); tokens are shown as ids`,
    );
  }
}
