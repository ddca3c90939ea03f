import assert from "node:assert/strict";
import { assertClose } from "../_util.ts";

Deno.test("assertClose treats NaN as equal only to NaN and reports the first mismatches", () => {
  assertClose([1, NaN, 3], [1, NaN, 3 + 1e-7]);
  assert.throws(() => assertClose([NaN], [1]), /1\/1 mismatches/);
  assert.throws(() => assertClose([1], [NaN]), /1\/1 mismatches/);
  assert.throws(
    () => assertClose([1, 2.5], [1, 2], { atol: 0.1, rtol: 0, label: "x" }),
    /x: 1\/2 mismatches \(max diff 0.5\): \[1\] got 2.5 want 2/,
  );
});
