import { composition } from "../../lib/eval/composition.ts";
import { assertClose, randn, testGpu } from "../_util.ts";

Deno.test("composition: mean max cosine over a hand-built decoder", async () => {
  // Rows: e1, e1 scaled (cos 1 with row 0), (e1+e2)/√2·3, e3 — row 3 is orthogonal to all.
  const s = Math.SQRT1_2;
  const decW = new Float32Array([1, 0, 0, 2, 0, 0, 3, 3, 0, 0, 0, 1]);
  for (const block of [1, 3, 256]) {
    const r = await composition(null, decW, 4, 3, block);
    assertClose(r.maxCosine, [1, 1, s, 0], { label: `block ${block}` });
    assertClose([r.meanMaxCosine], [(2 + s) / 4]);
  }
});

Deno.test("composition on the GPU matches the TS path at odd sizes", async () => {
  const gpu = await testGpu();
  for (const [n, d, block] of [[37, 13, 5], [70, 9, 256]]) {
    const decW = randn(n * d, n);
    const want = await composition(null, decW, n, d, block);
    const got = await composition(gpu, decW, n, d, block);
    assertClose(got.maxCosine, want.maxCosine, { atol: 1e-5, label: `n=${n} d=${d}` });
  }
});
