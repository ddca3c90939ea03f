/**
 * Where a model's files come from: a local Hugging Face folder, or a hub id downloaded once into
 * a cache folder on a connected machine. Downloads use timeouts, so an unreachable hub fails in
 * seconds with a message naming the local-folder alternative; `offline` never touches the network.
 */
import { join } from "node:path";
import { homedir } from "node:os";
import { ArborError } from "../errors.ts";

/** Files a GPT-2 model folder must hold. */
export const MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json"] as const;
/** Fetched too when the hub has it (transformers.js reads it beside tokenizer.json). */
const OPTIONAL_FILES = ["tokenizer_config.json"];
/** Hugging Face's public hub; override with HF_ENDPOINT (the variable HF's own tools read). */
export const DEFAULT_HUB = "https://huggingface.co";
/** Time allowed for the hub to answer a request (headers), before we give up. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Longest pause while a body streams before a download is abandoned. */
const IDLE_TIMEOUT_MS = 60_000;

/** Thrown when model files cannot be had; the message names the local-folder alternative. */
export class ModelFilesError extends ArborError {
  override name = "ModelFilesError";
}

/** Options of `resolveModel`. */
export interface ResolveOptions {
  /** Never use the network: only a local folder or an already-filled cache. */
  offline?: boolean;
  /** Cache folder for downloads (default $ARBOR_CACHE or ~/.cache/arbor/models). */
  cacheDir?: string;
  /** Hub base URL (default $HF_ENDPOINT or https://huggingface.co). */
  hubUrl?: string;
  /** Time allowed for each request's response headers, in ms. */
  timeoutMs?: number;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

function localHelp(id: string): string {
  return `pass --model DIR with a local folder holding ${MODEL_FILES.join(", ")} ` +
    `(on a connected machine: run "arbor extract --model ${id} ..." once, or download those ` +
    `files from https://huggingface.co/${id}/tree/main, and copy the folder over)`;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Default cache folder for downloaded models. */
export function defaultCacheDir(): string {
  return Deno.env.get("ARBOR_CACHE") ?? join(homedir(), ".cache", "arbor", "models");
}

/**
 * Turn `--model` into a local folder: an existing folder is used as is; otherwise `spec` is a hub
 * id ("gpt2", "openai-community/gpt2") fetched into the cache unless it is there already.
 */
export async function resolveModel(spec: string, options: ResolveOptions = {}): Promise<string> {
  if (await isDir(spec)) {
    const missing = [];
    for (const f of MODEL_FILES) if (!(await exists(join(spec, f)))) missing.push(f);
    if (missing.length) {
      throw new ModelFilesError(
        `${spec}: model folder lacks ${missing.join(", ")}; a GPT-2 model folder needs ` +
          `${MODEL_FILES.join(", ")} (Hugging Face layout)`,
      );
    }
    return spec;
  }
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(spec)) {
    throw new ModelFilesError(
      `--model ${spec}: no such folder, and not a hub id (like "gpt2" or "openai-community/gpt2")`,
    );
  }
  const dir = join(options.cacheDir ?? defaultCacheDir(), spec.replace("/", "--"));
  const have = await Promise.all(MODEL_FILES.map((f) => exists(join(dir, f))));
  if (have.every(Boolean)) return dir;
  if (options.offline) {
    throw new ModelFilesError(
      `model "${spec}" is not in the cache (${dir}) and --offline forbids downloading; ` +
        localHelp(spec),
    );
  }
  await download(spec, dir, options);
  return dir;
}

async function download(id: string, dir: string, options: ResolveOptions) {
  const hub = (options.hubUrl ?? Deno.env.get("HF_ENDPOINT") ?? DEFAULT_HUB).replace(/\/$/, "");
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const log = options.log ?? ((line: string) => console.error(line));
  await Deno.mkdir(dir, { recursive: true });
  for (const file of [...MODEL_FILES, ...OPTIONAL_FILES]) {
    const target = join(dir, file);
    if (await exists(target)) continue;
    const url = `${hub}/${id}/resolve/main/${file}`;
    const controller = new AbortController();
    let timer = setTimeout(() => controller.abort(), timeoutMs);
    let response: Response;
    try {
      response = await fetch(url, { signal: controller.signal });
    } catch (e) {
      clearTimeout(timer);
      const why = controller.signal.aborted
        ? `no answer within ${timeoutMs / 1000} s`
        : (e as Error).message;
      throw new ModelFilesError(
        `cannot reach the Hugging Face hub at ${hub} (${why}); ` + localHelp(id),
      );
    }
    clearTimeout(timer);
    if (response.status === 404 && OPTIONAL_FILES.includes(file)) {
      await response.body?.cancel();
      continue;
    }
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      throw new ModelFilesError(
        `${url}: the hub answered ${response.status} ${response.statusText}; check the model id, ` +
          `or ` + localHelp(id),
      );
    }
    log(`arbor: downloading ${url}`);
    const tmp = `${target}.tmp`;
    const out = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      const reader = response.body.getReader();
      while (true) {
        timer = setTimeout(() => controller.abort(), IDLE_TIMEOUT_MS);
        const { done, value } = await reader.read().finally(() => clearTimeout(timer));
        if (done) break;
        let off = 0;
        while (off < value.length) off += await out.write(value.subarray(off));
      }
      await out.sync();
    } catch (e) {
      throw new ModelFilesError(
        `${url}: download broke off (${(e as Error).message}); run again to retry, or ` +
          localHelp(id),
      );
    } finally {
      out.close();
    }
    await Deno.rename(tmp, target);
  }
}
