/**
 * Shard checksums: CRC-32 (IEEE 802.3, the zlib/PNG polynomial) written as 8 lowercase
 * hex digits. Computed by `node:zlib`'s native crc32 (tens of GB/s), so verifying
 * every shard on read costs far less than reading it.
 */
import { crc32 } from "node:zlib";

/** Name of the checksum algorithm recorded in the manifest. */
export const CHECKSUM_ALGORITHM = "crc32";

/** CRC-32 of `bytes` as 8 lowercase hex digits (continue from `prev` to hash in pieces). */
export function checksumHex(bytes: Uint8Array, prev = 0): string {
  return crc32(bytes, prev).toString(16).padStart(8, "0");
}

/** CRC-32 of `bytes` as a number, to chain pieces with `checksumHex(next, value)`. */
export function checksumValue(bytes: Uint8Array, prev = 0): number {
  return crc32(bytes, prev);
}
