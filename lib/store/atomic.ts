/**
 * Crash-safe file replacement: write `name.tmp`, fsync it, rename over `name`,
 * fsync the folder. A reader sees either the old file or the new one, never half.
 */
import { join } from "node:path";

/** Suffix of files being written; a leftover one is an interrupted write and is safe to delete. */
export const TMP_SUFFIX = ".tmp";

/** Write `parts` (concatenated) to `dir/name` atomically and durably. */
export async function writeFileAtomic(dir: string, name: string, parts: Uint8Array[]) {
  const tmp = join(dir, name + TMP_SUFFIX);
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    for (const part of parts) {
      let done = 0;
      while (done < part.length) done += await file.write(part.subarray(done));
    }
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, join(dir, name));
  await syncDir(dir);
}

/** fsync a folder so a rename in it survives a power cut (best effort: not every OS allows it). */
export async function syncDir(dir: string) {
  let handle: Deno.FsFile | undefined;
  try {
    handle = await Deno.open(dir, { read: true });
    await handle.sync();
  } catch {
    // Opening or syncing a folder is unsupported on some platforms (Windows); the rename still happened.
  } finally {
    handle?.close();
  }
}
