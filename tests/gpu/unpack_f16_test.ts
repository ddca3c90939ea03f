import { assertClose, randn, testGpu } from "../_util.ts";
import { uploadF16AsF32 } from "../../lib/gpu/unpack_f16.ts";
import { readF32 } from "../../lib/gpu/buffer.ts";
import { f16BitsToF32, f32ToF16Bits, fromF16, toF16 } from "../../lib/util/f16.ts";
import assert from "node:assert/strict";

Deno.test("f32ToF16Bits rounds to nearest even and handles specials", () => {
  assert.equal(f32ToF16Bits(1), 0x3c00);
  assert.equal(f32ToF16Bits(-2), 0xc000);
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f32ToF16Bits(1e6), 0x7c00);
  assert.equal(f32ToF16Bits(2 ** -24), 0x0001);
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // tie → even
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
  assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
  for (let h = 0; h < 0x7c00; h += 7) assert.equal(f32ToF16Bits(f16BitsToF32(h)), h);
});

Deno.test("unpack_f16 kernel widens f16 like the TypeScript reference (odd sizes)", async () => {
  const gpu = await testGpu();
  for (const n of [1, 2, 511, 513, 1000, 100_001]) {
    const bits = toF16(randn(n, n));
    const buf = await uploadF16AsF32(gpu, bits, "unpack test");
    const got = await readF32(gpu, buf, n);
    buf.destroy();
    assertClose(got, fromF16(bits), { atol: 0, rtol: 0, label: `n=${n}` });
  }
});
