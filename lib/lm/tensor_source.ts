/**
 * Open a weights file as a `TensorSource` (lib/lm/weights.ts).
 *
 * Interim: until lib/format/safetensors.ts lands, this holds a minimal read-only safetensors
 * parse (8-byte little-endian header length, JSON header, raw little-endian data). It is the
 * only place to switch over to the shared reader.
 */
import { DataError } from "../errors.ts";
import { fromF16 } from "../util/f16.ts";
import type { TensorEntry, TensorSource } from "./weights.ts";

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I32: 4 };

/** Read a safetensors file fully into memory and expose its tensors by name. */
export async function openSafetensors(file: string): Promise<TensorSource> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    throw new DataError(`${file}: cannot read the weights (${(e as Error).message})`);
  }
  if (bytes.length < 8) throw new DataError(`${file}: too short to be a safetensors file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (8 + headerLen > bytes.length) {
    throw new DataError(
      `${file}: header length ${headerLen} runs past the end of the file (truncated download?)`,
    );
  }
  let header: Record<string, HeaderEntry>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new DataError(`${file}: safetensors header is not valid JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + headerLen;
  const names = Object.keys(header).filter((n) => n !== "__metadata__");
  const get = (name: string): TensorEntry | undefined => {
    const h = header[name];
    if (!h || name === "__metadata__") return undefined;
    return {
      dtype: h.dtype,
      shape: h.shape,
      toF32() {
        const size = BYTES[h.dtype];
        if (!size) {
          throw new DataError(
            `${file}: tensor "${name}" has dtype ${h.dtype}; expected F32, F16, BF16 or I32`,
          );
        }
        const [s, e] = h.data_offsets;
        const count = h.shape.reduce((a, b) => a * b, 1);
        if (e - s !== count * size || dataStart + e > bytes.length) {
          throw new DataError(
            `${file}: tensor "${name}" data does not match its shape [${h.shape}] (truncated file?)`,
          );
        }
        const raw = bytes.slice(dataStart + s, dataStart + e);
        if (h.dtype === "F32") return new Float32Array(raw.buffer);
        if (h.dtype === "I32") return Float32Array.from(new Int32Array(raw.buffer));
        const half = new Uint16Array(raw.buffer);
        if (h.dtype === "F16") return fromF16(half);
        const out = new Float32Array(count);
        new Uint32Array(out.buffer).set(Array.from(half, (b) => b << 16));
        return out;
      },
    };
  };
  return { file, names: () => names, get };
}
