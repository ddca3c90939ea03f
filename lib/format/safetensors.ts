/**
 * Our own safetensors reader and writer (https://huggingface.co/docs/safetensors):
 * an 8-byte little-endian u64 header length N, N bytes of JSON header
 * ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}),
 * then the data buffer; offsets are relative to the buffer's start.
 * Reading gives zero-copy typed-array views when the data is aligned (a copy otherwise);
 * writing pads the header with spaces so the buffer starts 8-byte aligned, and stores
 * 8-byte tensors first so every tensor stays naturally aligned with no holes.
 */
import { DataError } from "../errors.ts";
import { f16BitsToF32 } from "../util/f16.ts";
import { writeFileAtomic } from "../store/atomic.ts";
import { basename, dirname } from "node:path";

/** Element types the reader understands (writing supports F32, I32, I64, U32). */
export type Dtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/** Bytes per element of every dtype. */
export const DTYPE_SIZE: Record<Dtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** Largest header we accept (the reference crate's limit): a bigger one means a corrupt file. */
const MAX_HEADER_BYTES = 100_000_000;

/** Where one tensor lives in the file. */
export interface TensorInfo {
  /** Element type. */
  dtype: Dtype;
  /** Dimensions, outermost first. */
  shape: number[];
  /** Byte offset of the first element from the start of the file. */
  offset: number;
  /** Size in bytes. */
  byteLength: number;
}

/** A parsed safetensors file held in memory; accessors return views into `bytes` where they can. */
export class SafeTensors {
  /** File name used in error messages. */
  readonly path: string;
  /** The whole file. */
  readonly bytes: Uint8Array;
  /** `__metadata__` string pairs (empty when absent). */
  readonly metadata: Record<string, string>;
  readonly #tensors: Map<string, TensorInfo>;

  /** Parse and validate `bytes` (the whole file); `path` names the file in errors. */
  constructor(bytes: Uint8Array, path = "<memory>") {
    this.path = path;
    this.bytes = bytes;
    const { metadata, tensors } = parseHeader(bytes, path);
    this.metadata = metadata;
    this.#tensors = tensors;
  }

  /** Tensor names in file order. */
  names(): string[] {
    return [...this.#tensors.keys()];
  }

  /** Whether a tensor exists. */
  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  /** Placement of a tensor; throws DataError naming the file when missing. */
  info(name: string): TensorInfo {
    const t = this.#tensors.get(name);
    if (!t) {
      throw new DataError(
        `${this.path}: no tensor "${name}" (has: ${this.names().join(", ") || "none"})`,
      );
    }
    return t;
  }

  /** The raw bytes of a tensor (a view, never a copy). */
  raw(name: string): Uint8Array {
    const t = this.info(name);
    return this.bytes.subarray(t.offset, t.offset + t.byteLength);
  }

  /** F32/F16/BF16 tensor as Float32Array (F32 aligned: zero-copy view; else converted copy). */
  f32(name: string): Float32Array {
    const t = this.info(name);
    const count = t.byteLength / DTYPE_SIZE[t.dtype];
    if (t.dtype === "F32") return this.#view(t, Float32Array, 4, count);
    if (t.dtype === "F16" || t.dtype === "BF16") {
      const bits = this.#view(t, Uint16Array, 2, count);
      const out = new Float32Array(count);
      if (t.dtype === "F16") { for (let i = 0; i < count; i++) out[i] = f16BitsToF32(bits[i]); }
      else {
        const u = new Uint32Array(out.buffer);
        for (let i = 0; i < count; i++) u[i] = bits[i] << 16; // bf16 = the top half of an f32
      }
      return out;
    }
    throw this.#wrongType(name, t, "a float tensor (F32, F16 or BF16)");
  }

  /** I32/I64/U32 tensor as Int32Array (I32 aligned: zero-copy; I64/U32 values must fit i32). */
  i32(name: string): Int32Array {
    const t = this.info(name);
    const count = t.byteLength / DTYPE_SIZE[t.dtype];
    if (t.dtype === "I32") return this.#view(t, Int32Array, 4, count);
    const wide = t.dtype === "I64"
      ? Array.from(this.#view(t, BigInt64Array, 8, count), Number)
      : t.dtype === "U32"
      ? Array.from(this.#view(t, Uint32Array, 4, count))
      : undefined;
    if (!wide) throw this.#wrongType(name, t, "an integer tensor (I32, I64 or U32)");
    const bad = wide.findIndex((v) => v < -0x80000000 || v > 0x7fffffff);
    if (bad >= 0) {
      throw new DataError(
        `${this.path}: tensor "${name}"[${bad}] = ${wide[bad]} does not fit in 32 bits`,
      );
    }
    return Int32Array.from(wide);
  }

  /** U32/I32/I64 tensor as Uint32Array (U32 aligned: zero-copy; others must be in [0, 2^32)). */
  u32(name: string): Uint32Array {
    const t = this.info(name);
    const count = t.byteLength / DTYPE_SIZE[t.dtype];
    if (t.dtype === "U32") return this.#view(t, Uint32Array, 4, count);
    const wide = t.dtype === "I64"
      ? Array.from(this.#view(t, BigInt64Array, 8, count), Number)
      : t.dtype === "I32"
      ? Array.from(this.#view(t, Int32Array, 4, count))
      : undefined;
    if (!wide) throw this.#wrongType(name, t, "an integer tensor (U32, I32 or I64)");
    const bad = wide.findIndex((v) => v < 0 || v > 0xffffffff);
    if (bad >= 0) {
      throw new DataError(`${this.path}: tensor "${name}"[${bad}] = ${wide[bad]} is not a u32`);
    }
    return Uint32Array.from(wide);
  }

  /** I64 tensor as BigInt64Array (zero-copy when aligned). */
  i64(name: string): BigInt64Array {
    const t = this.info(name);
    if (t.dtype !== "I64") throw this.#wrongType(name, t, "an I64 tensor");
    return this.#view(t, BigInt64Array, 8, t.byteLength / 8);
  }

  #view<T>(
    t: TensorInfo,
    Ctor: { new (buf: ArrayBufferLike, off: number, len: number): T; new (len: number): T },
    size: number,
    count: number,
  ): T {
    const start = this.bytes.byteOffset + t.offset;
    if (start % size === 0) return new Ctor(this.bytes.buffer, start, count);
    const copy = this.bytes.slice(t.offset, t.offset + t.byteLength); // unaligned: copy to aligned memory
    return new Ctor(copy.buffer, 0, count);
  }

  #wrongType(name: string, t: TensorInfo, want: string): DataError {
    return new DataError(`${this.path}: tensor "${name}" is ${t.dtype}, expected ${want}`);
  }
}

function parseHeader(bytes: Uint8Array, path: string) {
  const fail = (msg: string): never => {
    throw new DataError(`${path}: ${msg}`);
  };
  if (bytes.length < 8) {
    fail(
      `truncated safetensors file: ${bytes.length} bytes, shorter than the 8-byte header length`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(dv.getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES) {
    fail(`not a safetensors file: header length ${headerLen} is absurd`);
  }
  if (8 + headerLen > bytes.length) {
    fail(
      `truncated safetensors file: header needs ${headerLen} bytes, only ${
        bytes.length - 8
      } follow`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)),
    );
  } catch (e) {
    fail(`bad safetensors header (not JSON: ${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("bad safetensors header: expected a JSON object");
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      for (const [k, v] of Object.entries((entry ?? {}) as Record<string, unknown>)) {
        if (typeof v !== "string") {
          fail(`bad safetensors header: __metadata__.${k} is not a string`);
        }
        metadata[k] = v as string;
      }
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e?.dtype !== "string" || !(e.dtype in DTYPE_SIZE)) {
      fail(`tensor "${name}": unknown dtype ${JSON.stringify(e?.dtype)}`);
    }
    const dtype = e.dtype as Dtype;
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((s) => Number.isInteger(s) && s >= 0)) {
      fail(`tensor "${name}": shape ${JSON.stringify(shape)} is not a list of sizes`);
    }
    const offs = e.data_offsets;
    if (
      !Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0)
    ) {
      fail(`tensor "${name}": data_offsets ${JSON.stringify(offs)} is not [begin, end]`);
    }
    const [begin, end] = offs as number[];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== count * DTYPE_SIZE[dtype]) {
      fail(
        `tensor "${name}": data_offsets span ${end - begin} bytes, shape ${
          JSON.stringify(shape)
        } ${dtype} needs ${count * DTYPE_SIZE[dtype]}`,
      );
    }
    if (end > dataLen) {
      fail(
        `truncated safetensors file: tensor "${name}" ends at byte ${end} of the data, which has only ${dataLen}`,
      );
    }
    tensors.set(name, {
      dtype,
      shape: shape as number[],
      offset: dataStart + begin,
      byteLength: end - begin,
    });
  }
  return { metadata, tensors };
}

/** Read and parse a safetensors file; DataError names the file when it is missing or bad. */
export async function readSafetensors(path: string): Promise<SafeTensors> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(`${path}: file not found`);
    throw new DataError(`${path}: cannot read (${(e as Error).message})`);
  }
  return new SafeTensors(bytes, path);
}

/** Data a writer accepts; the dtype defaults from the array type (Int32Array may be widened to I64). */
export interface TensorData {
  /** Dimensions; their product must equal the data length. */
  shape: number[];
  /** Values. */
  data: Float32Array | Int32Array | Uint32Array | BigInt64Array;
  /** Stored type: F32, I32, U32 or I64 (default: the array's own type). */
  dtype?: "F32" | "I32" | "U32" | "I64";
}

function storedBytes(name: string, t: TensorData): { dtype: Dtype; bytes: Uint8Array } {
  const natural: Dtype = t.data instanceof Float32Array
    ? "F32"
    : t.data instanceof Int32Array
    ? "I32"
    : t.data instanceof Uint32Array
    ? "U32"
    : "I64";
  const dtype = t.dtype ?? natural;
  const count = t.shape.reduce((a, b) => a * b, 1);
  if (count !== t.data.length) {
    throw new RangeError(
      `safetensors write: tensor "${name}" has ${t.data.length} values for shape [${t.shape}]`,
    );
  }
  if (dtype === natural) {
    return { dtype, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
  }
  if (dtype === "I64" && !(t.data instanceof Float32Array) && !(t.data instanceof BigInt64Array)) {
    const wide = BigInt64Array.from(t.data as ArrayLike<number>, (v) => BigInt(v));
    return { dtype, bytes: new Uint8Array(wide.buffer) };
  }
  throw new RangeError(
    `safetensors write: tensor "${name}" cannot be stored as ${dtype} from ${natural}`,
  );
}

/** Serialise tensors (and optional string metadata) into safetensors bytes. */
export function serializeSafetensors(
  tensors: Record<string, TensorData>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = Object.entries(tensors).map(([name, t]) => ({
    name,
    t,
    ...storedBytes(name, t),
  }));
  // 8-byte types first: every offset stays a multiple of its element size, with no gaps
  entries.sort((a, b) => DTYPE_SIZE[b.dtype] - DTYPE_SIZE[a.dtype]);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const e of entries) {
    header[e.name] = {
      dtype: e.dtype,
      shape: e.t.shape,
      data_offsets: [offset, offset + e.bytes.length],
    };
    offset += e.bytes.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20); // spaces: still valid JSON
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const e of entries) {
    out.set(e.bytes, at);
    at += e.bytes.length;
  }
  return out;
}

/** Write a safetensors file atomically and durably (temporary file, fsync, rename). */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorData>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(dirname(path), basename(path), [serializeSafetensors(tensors, metadata)]);
}
