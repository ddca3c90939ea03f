/**
 * Errors a user can act on: the message names the file or field and the fix.
 * The CLI prints these on one line without a stack trace.
 */
export class ArborError extends Error {
  override name = "ArborError";
}

/** Bad or inconsistent data on disk (manifest, shard, checkpoint). */
export class DataError extends ArborError {
  override name = "DataError";
}

/** A GPU validation or out-of-memory error, naming the kernel that caused it. */
export class GpuError extends ArborError {
  override name = "GpuError";
}
