/**
 * Reading the small JSON config files of other SAE libraries (cfg.json, tree.json) with
 * errors that name the file and the field: a missing file, bad JSON, a missing or mistyped
 * field all become DataError "<path>: ...".
 */
import { DataError } from "../errors.ts";

/** A parsed JSON object plus the path it came from, with typed field getters. */
export class JsonFile {
  /** File name used in every error. */
  readonly path: string;
  /** The parsed object. */
  readonly raw: Record<string, unknown>;

  /** Wrap an already-parsed object (tests, nested blocks); `path` names it in errors. */
  constructor(raw: Record<string, unknown>, path: string) {
    this.raw = raw;
    this.path = path;
  }

  /** Whether `key` is present and not null. */
  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  /** A required integer field ≥ `min`. */
  int(key: string, min = 0, hint = ""): number {
    const v = this.raw[key];
    if (v === undefined || v === null) this.#missing(key, hint);
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      throw new DataError(
        `${this.path}: field "${key}" = ${JSON.stringify(v)} must be an integer ≥ ${min}`,
      );
    }
    return v as number;
  }

  /** A required string field. */
  string(key: string, hint = ""): string {
    const v = this.raw[key];
    if (v === undefined || v === null) this.#missing(key, hint);
    if (typeof v !== "string") {
      throw new DataError(`${this.path}: field "${key}" = ${JSON.stringify(v)} must be a string`);
    }
    return v as string;
  }

  /** An optional string field with a default. */
  optString(key: string, fallback: string): string {
    return this.has(key) ? this.string(key) : fallback;
  }

  /** An optional boolean field with a default. */
  optBool(key: string, fallback: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") {
      throw new DataError(`${this.path}: field "${key}" = ${JSON.stringify(v)} must be true/false`);
    }
    return v;
  }

  /** A required list of integers ≥ `min`. */
  intList(key: string, min = 0, hint = ""): number[] {
    const v = this.raw[key];
    if (v === undefined || v === null) this.#missing(key, hint);
    if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && x >= min)) {
      throw new DataError(
        `${this.path}: field "${key}" must be a list of integers ≥ ${min}, got ${
          JSON.stringify(v).slice(0, 80)
        }`,
      );
    }
    return v as number[];
  }

  /** A nested object field (undefined when absent). */
  object(key: string): JsonFile | undefined {
    const v = this.raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "object" || Array.isArray(v)) {
      throw new DataError(`${this.path}: field "${key}" must be an object`);
    }
    return new JsonFile(v as Record<string, unknown>, `${this.path} (${key})`);
  }

  #missing(key: string, hint: string): never {
    throw new DataError(
      `${this.path}: required field "${key}" is missing${hint ? ` (${hint})` : ""}`,
    );
  }
}

/** Read and parse a JSON object file; DataError names the file when missing or malformed. */
export async function readJsonFile(path: string): Promise<JsonFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(`${path}: file not found`);
    throw new DataError(`${path}: cannot read (${(e as Error).message})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new DataError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new DataError(`${path}: expected a JSON object at the top level`);
  }
  return new JsonFile(v as Record<string, unknown>, path);
}

/** Pretty JSON bytes with a trailing newline (what every exporter writes). */
export function jsonBytes(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v, null, 2) + "\n");
}
