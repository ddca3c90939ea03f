/** Helpers for the store tests: temp folders, folder hashes, tagged rows. */
import { checksumHex } from "../../lib/store/checksum.ts";
import { join } from "node:path";

/** A fresh temp folder; remove it with `Deno.remove(dir, { recursive: true })`. */
export function tempDir(): Promise<string> {
  return Deno.makeTempDir({ prefix: "arbor_store_test_" });
}

/** Map of file name → "size:crc32" of every file directly in `dir` (to prove nothing changed). */
export async function hashDir(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
  for (const name of names.sort()) {
    const bytes = await Deno.readFile(join(dir, name));
    out[name] = `${bytes.length}:${checksumHex(bytes)}`;
  }
  return out;
}

/** Rows `[start, start + n)` of `d` values whose content is a function of the row id. */
export function taggedRows(start: number, n: number, d: number): Float32Array {
  const x = new Float32Array(n * d);
  for (let r = 0; r < n; r++) {
    const i = start + r;
    for (let j = 0; j < d; j++) x[r * d + j] = Math.sin(i * 0.37 + j * 1.3) * (1 + (j % 7));
  }
  return x;
}

/** Token info tagging rows `[start, start + n)`: token id = row id. */
export function tagTokens(start: number, n: number) {
  const tokenIds = new Uint32Array(n), docIds = new Uint32Array(n), positions = new Uint32Array(n);
  for (let r = 0; r < n; r++) {
    tokenIds[r] = start + r;
    docIds[r] = (start + r) >>> 6;
    positions[r] = (start + r) & 63;
  }
  return { tokenIds, docIds, positions };
}
