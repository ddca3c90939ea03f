/** Tests of the safetensors reader/writer (lib/format/safetensors.ts). */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  readSafetensors,
  SafeTensors,
  serializeSafetensors,
  writeSafetensors,
} from "../../lib/format/safetensors.ts";
import { f32ToF16Bits } from "../../lib/util/f16.ts";

/** Build a file by hand: header JSON (unpadded, so data may be misaligned) + raw data bytes. */
function handBuilt(header: unknown, data: number[]): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

Deno.test("round trip of F32, I32, U32 and I64 tensors with metadata, aligned and zero-copy", () => {
  const w = Float32Array.from([1.5, -2, 3.25, 0, 1e-30, 7]);
  const p = Int32Array.from([0, 3, -1]);
  const u = Uint32Array.from([0xffffffff, 1]);
  const bytes = serializeSafetensors(
    {
      "encoder.weight": { shape: [2, 3], data: w },
      parent_index_1: { shape: [3], data: p, dtype: "I64" },
      counters: { shape: [2], data: u },
      one: { shape: [], data: Float32Array.from([9]) },
    },
    { format: "pt", note: "hello" },
  );
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0, "header padded so the data starts 8-byte aligned");
  const st = new SafeTensors(bytes, "mem.safetensors");
  assert.deepEqual(st.metadata, { format: "pt", note: "hello" });
  assert.deepEqual(st.info("encoder.weight").shape, [2, 3]);
  assert.deepEqual(st.f32("encoder.weight"), w);
  assert.equal(st.f32("encoder.weight").buffer, bytes.buffer, "aligned F32 is a view, not a copy");
  assert.equal(st.info("parent_index_1").dtype, "I64");
  assert.deepEqual(st.i32("parent_index_1"), p);
  assert.deepEqual(Array.from(st.i64("parent_index_1")), [0n, 3n, -1n]);
  assert.deepEqual(st.u32("counters"), u);
  assert.deepEqual(Array.from(st.f32("one")), [9]);
  assert.deepEqual(st.info("one").shape, []);
});

Deno.test("reads a hand-built file with F16, BF16 and an unaligned F32 tensor", () => {
  const f16 = [1, -0.5, 65504].map(f32ToF16Bits);
  const bf16 = [0x3f80, 0xc000]; // 1.0, -2.0
  const f32 = new Uint8Array(Float32Array.from([0.25, -8]).buffer);
  const data = [
    ...new Uint8Array(Uint16Array.from(f16).buffer),
    ...new Uint8Array(Uint16Array.from(bf16).buffer),
    ...f32,
  ];
  const header = {
    h: { dtype: "F16", shape: [3], data_offsets: [0, 6] },
    b: { dtype: "BF16", shape: [1, 2], data_offsets: [6, 10] },
    f: { dtype: "F32", shape: [2], data_offsets: [10, 18] },
  };
  const st = new SafeTensors(handBuilt(header, data), "hand.safetensors");
  assert.deepEqual(st.metadata, {});
  assert.deepEqual(Array.from(st.f32("h")), [1, -0.5, 65504]);
  assert.deepEqual(Array.from(st.f32("b")), [1, -2]);
  assert.deepEqual(Array.from(st.f32("f")), [0.25, -8]);
  assert.deepEqual(st.names(), ["h", "b", "f"]);
});

Deno.test("truncated or malformed files give errors naming the file", () => {
  const good = serializeSafetensors({ a: { shape: [4], data: new Float32Array(4) } });
  assert.throws(
    () => new SafeTensors(good.subarray(0, 5), "x.safetensors"),
    /x\.safetensors: truncated safetensors file: 5 bytes/,
  );
  assert.throws(
    () => new SafeTensors(good.subarray(0, 20), "x.safetensors"),
    /x\.safetensors: truncated safetensors file: header needs/,
  );
  assert.throws(
    () => new SafeTensors(good.subarray(0, good.length - 1), "x.safetensors"),
    /x\.safetensors: truncated safetensors file: tensor "a" ends at byte 16 of the data, which has only 15/,
  );
  const notJson = handBuilt({}, []);
  notJson[8] = 0x7b;
  notJson[9] = 0x78; // "{x"
  assert.throws(
    () => new SafeTensors(notJson, "y.safetensors"),
    /y\.safetensors: bad safetensors header \(not JSON/,
  );
  assert.throws(
    () =>
      new SafeTensors(
        handBuilt({ a: { dtype: "Q8", shape: [1], data_offsets: [0, 1] } }, [0]),
        "z",
      ),
    /z: tensor "a": unknown dtype "Q8"/,
  );
  assert.throws(
    () =>
      new SafeTensors(
        handBuilt({ a: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, [0, 0, 0, 0]),
        "z",
      ),
    /tensor "a": data_offsets span 4 bytes, shape \[2\] F32 needs 8/,
  );
  const st = new SafeTensors(good, "g.safetensors");
  assert.throws(() => st.f32("b"), /g\.safetensors: no tensor "b" \(has: a\)/);
  assert.throws(() => st.i32("a"), /tensor "a" is F32, expected an integer tensor/);
});

Deno.test("writeSafetensors writes atomically and readSafetensors reads it back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "sae.safetensors");
    await writeSafetensors(path, { b_dec: { shape: [3], data: Float32Array.from([1, 2, 3]) } });
    const st = await readSafetensors(path);
    assert.deepEqual(Array.from(st.f32("b_dec")), [1, 2, 3]);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["sae.safetensors"]);
    await assert.rejects(
      () => readSafetensors(join(dir, "missing.safetensors")),
      /missing\.safetensors: file not found/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
