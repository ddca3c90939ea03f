import assert from "node:assert/strict";
import { ReconstructionAccumulator } from "../../lib/eval/reconstruction.ts";
import { type SparseCodes, UNUSED_SLOT } from "../../lib/eval/sparse_codes.ts";
import { assertClose } from "../_util.ts";

const U = UNUSED_SLOT;
// Two tokens, d = 2, n = 4 features in layers [2, 2], k = 3 slots.
const x = new Float32Array([1, 3, 5, 5]);
const xHat = new Float32Array([1, 2, 5, 5]);
const codes: SparseCodes = {
  idx: new Uint32Array([0, 2, U, 1, 3, 0]),
  val: new Float32Array([1, 0.5, 0, 2, 0.0005, 0.7]), // 0.0005 is below the firing threshold
  rows: 2,
  k: 3,
};

function rowCodes(c: SparseCodes, r: number): SparseCodes {
  return {
    idx: c.idx.slice(r * c.k, (r + 1) * c.k),
    val: c.val.slice(r * c.k, (r + 1) * c.k),
    rows: 1,
    k: c.k,
  };
}

Deno.test("reconstruction metrics match hand-computed values", () => {
  const acc = new ReconstructionAccumulator(2, 4, { layerSizes: [2, 2] });
  acc.add(x, xHat, codes);
  const m = acc.result();
  // sse = 1 (token 0, coordinate 1).
  assert.equal(m.tokens, 2);
  assertClose([m.mse, m.msePerToken], [0.25, 0.5], { label: "mse" });
  // x̄ = [3, 4]: Σ‖x − x̄‖² = 5 + 5 = 10 → pooled R² = 0.9.
  assertClose([m.varianceExplained], [0.9], { label: "pooled R²" });
  // Token means 2 and 5: Σ‖x − m_t‖² = 2 + 0 → token-centred = 1 − 1/2.
  assertClose([m.varianceExplainedTokenCentred], [0.5], { label: "token-centred" });
  assertClose([m.cosine], [(7 / Math.sqrt(50) + 1) / 2], { label: "cosine" });
  assertClose([m.l2Ratio], [(Math.sqrt(0.5) + 1) / 2], { label: "l2 ratio" });
  assertClose([m.l0, ...m.l0PerLayer], [2, 1.5, 0.5], { label: "l0" });
  assertClose(m.densities, [1, 0.5, 0.5, 0], { label: "densities" });
  assertClose([m.deadFraction, ...m.deadFractionPerLayer], [0.25, 0, 0.5], { label: "dead" });
  assertClose([m.denseFraction], [0.75], { label: "dense" });
});

Deno.test("reconstruction metrics streamed token by token equal one batch", () => {
  const acc = new ReconstructionAccumulator(2, 4, { layerSizes: [2, 2], denseDensity: 0.6 });
  acc.add(x.slice(0, 2), xHat.slice(0, 2), rowCodes(codes, 0));
  acc.add(x.slice(2), xHat.slice(2), rowCodes(codes, 1));
  const m = acc.result();
  assertClose([m.varianceExplained, m.varianceExplainedTokenCentred, m.l0], [0.9, 0.5, 2]);
  assertClose([m.denseFraction], [0.25], { label: "dense at 0.6" });
});

Deno.test("reconstruction rejects layer sizes and shapes that do not fit", () => {
  assert.throws(
    () => new ReconstructionAccumulator(2, 4, { layerSizes: [2, 3] }),
    /layerSizes sum to 5, but the SAE has 4 features/,
  );
  const acc = new ReconstructionAccumulator(3, 4, { layerSizes: [4] });
  assert.throws(() => acc.add(x, xHat, codes), /expected 2×3/);
});
