/** Tests of the TS reference SAE math (lib/sae/reference) and the ReferenceEngine. */
import assert from "node:assert/strict";
import { assertClose, randn } from "../_util.ts";
import { featureLayers, makeConfig, numFeatures, type SaeConfig } from "../../lib/sae/config.ts";
import {
  adamStep,
  auxGroups,
  backward,
  type Codes,
  decode,
  encode,
  FIRE_THRESHOLD,
  geometricMedian,
  initParams,
  levelReconstructions,
  losses,
  type LossResult,
  removeParallelGrad,
  renormRows,
  selectAux,
  selectBatchTopK,
  selectTopK,
  selectTree,
  standardize,
  UNUSED_SLOT,
} from "../../lib/sae/reference/ops.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { Rng } from "../../lib/util/rng.ts";
import { childCounts, makeTree } from "../../lib/tree/structure.ts";

interface Params {
  encW: Float32Array;
  decW: Float32Array;
  bDec: Float32Array;
}

/** The forward pass of one step with fixed inputs, as ReferenceEngine runs it. */
function forward(
  c: SaeConfig,
  p: Params,
  parents: Int32Array[],
  xs: Float32Array,
  B: number,
  dead: Uint8Array,
  frozen?: Float32Array[],
): { loss: LossResult; codes: Codes; aux: Codes[] } {
  const n = numFeatures(c);
  const d = c.dIn;
  const pre = encode(xs, p.encW, p.bDec, B, d, n);
  const codes = c.arch === "tree"
    ? selectTree(pre, B, n, c.layers, c.kPerLayer, parents)
    : selectTopK(pre, B, n, c.k);
  const recon = levelReconstructions(
    codes.idx,
    codes.val,
    B,
    codes.K,
    p.decW,
    p.bDec,
    d,
    featureLayers(c),
    c.layers.length,
  );
  const groups = auxGroups(c);
  const aux = groups.map((g) => selectAux(pre, B, n, g, dead, c.auxK, codes, parents));
  return { loss: losses(xs, B, d, recon, p.decW, groups, aux, frozen), codes, aux };
}

/** A fingerprint of every discrete choice: selected indices and which values are > 0 / fire. */
function pattern(codes: Codes[]): string {
  return codes.map((c) =>
    Array.from(c.idx).join(",") + "|" +
    Array.from(c.val, (v) => (v > FIRE_THRESHOLD ? 2 : v > 0 ? 1 : 0)).join("")
  ).join(";");
}

/** Central finite differences of the loss (AuxK residuals frozen) vs backward(), every coordinate. */
function gradientCheck(c: SaeConfig, B: number, deadEvery: number, dataSeed = 11) {
  const n = numFeatures(c);
  const d = c.dIn;
  const init = initParams(c);
  const p: Params = { encW: init.encW, decW: init.decW, bDec: randn(d, 7).map((v) => 0.1 * v) };
  // perturb the tied encoder so encoder and decoder gradients differ
  const noise = randn(n * d, 3);
  p.encW = p.encW.map((v, i) => v + 0.3 * noise[i]);
  const { xs } = standardize(randn(B * d, dataSeed), B, d);
  const dead = new Uint8Array(n).map((_, f) => (f % deadEvery === 0 ? 1 : 0));
  const base = forward(c, p, init.parents, xs, B, dead);
  assert.ok(base.aux.some((a) => a.K > 0 && a.val.some((v) => v > 0)), "AuxK must be active");
  const grads = backward(
    xs,
    B,
    d,
    n,
    p.encW,
    p.decW,
    p.bDec,
    base.codes,
    featureLayers(c),
    base.loss,
  );
  const frozen = base.loss.aux.map((t) => t.residual);
  const basePattern = pattern([base.codes, ...base.aux]);
  const eps = 2e-3; // the loss is piecewise quadratic: small steps only to avoid flipping a choice
  let checked = 0;
  let total = 0;
  for (const name of ["encW", "decW", "bDec"] as const) {
    const fd = new Float32Array(p[name].length);
    const skip: boolean[] = [];
    for (let i = 0; i < p[name].length; i++) {
      const orig = p[name][i];
      const evalAt = (v: number) => {
        p[name][i] = v;
        const r = forward(c, p, init.parents, xs, B, dead, frozen);
        p[name][i] = orig;
        return r;
      };
      const plus = evalAt(orig + eps);
      const minus = evalAt(orig - eps);
      total++;
      // a coordinate whose nudge flips a discrete choice is not differentiable there
      if (
        pattern([plus.codes, ...plus.aux]) !== basePattern ||
        pattern([minus.codes, ...minus.aux]) !== basePattern
      ) {
        skip[i] = true;
        continue;
      }
      checked++;
      fd[i] = (plus.loss.total - minus.loss.total) / (2 * eps);
    }
    const analytic = grads[name].map((g, i) => (skip[i] ? 0 : g));
    const scale = Math.max(...Array.from(fd, Math.abs));
    assert.ok(scale > 0, `${name}: gradient is not all zero`);
    assertClose(analytic, fd, {
      atol: 1e-3 * scale,
      rtol: 1e-3,
      label: `${c.arch} d loss/d ${name}`,
    });
  }
  assert.ok(
    checked >= 0.9 * total,
    `only ${checked}/${total} coordinates were smooth enough to check`,
  );
}

Deno.test("backward matches finite differences for TopK with AuxK", () => {
  gradientCheck(makeConfig({ arch: "topk", dIn: 6, layers: [12], k: 3, auxK: 4 }), 5, 2, 12);
});

Deno.test("backward matches finite differences for Matryoshka (two prefixes) with AuxK", () => {
  gradientCheck(makeConfig({ arch: "matryoshka", dIn: 5, layers: [4, 9], k: 4, auxK: 3 }), 6, 3);
});

Deno.test("backward matches finite differences for a 3-layer tree with AuxK on every layer", () => {
  const c = makeConfig({
    arch: "tree",
    dIn: 6,
    layers: [3, 5, 8],
    kPerLayer: [2, 2, 2],
    auxK: 3,
    auxAlpha: [0.5, 0.25, 0.125],
    seed: 5,
  });
  gradientCheck(c, 6, 2);
});

Deno.test("selectTree never activates a child whose parent does not fire on the token", () => {
  const layers = [6, 10, 14];
  const kPerLayer = [3, 3, 2];
  const c = makeConfig({ arch: "tree", dIn: 4, layers, kPerLayer, seed: 9 });
  const { parents } = initParams(c);
  const B = 40;
  const n = numFeatures(c);
  const pre = randn(B * n, 21);
  const codes = selectTree(pre, B, n, layers, kPerLayer, parents);
  let gatedChildren = 0;
  for (let b = 0; b < B; b++) {
    const val = new Float32Array(n);
    for (let s = 0; s < codes.K; s++) val[codes.idx[b * codes.K + s]] = codes.val[b * codes.K + s];
    let o = 0;
    for (let l = 0; l < layers.length; l++) {
      for (let i = 0; i < layers[l]; i++) {
        const p = parents[l][i];
        if (val[o + i] > 0 && p !== o) {
          gatedChildren++;
          assert.ok(
            val[p] > FIRE_THRESHOLD,
            `row ${b}: feature ${o + i} active, its parent ${p} not`,
          );
        }
      }
      o += layers[l];
    }
  }
  assert.ok(gatedChildren > 0, "the random tree must produce some gated children");
});

Deno.test("selectTree hand case: gated scores, ties to the lower index, layer-major slots", () => {
  // layer 0: features 0,1; layer 1: features 2,3,4 with parents 0, 1, root(2)
  const pre = Float32Array.from([0.5, -1, 2, 3, 1]);
  const codes = selectTree(pre, 1, 5, [2, 3], [1, 2], [
    Int32Array.from([0, 0]),
    Int32Array.from([0, 1, 2]),
  ]);
  // layer 0 picks feature 0 (0.5); feature 3's parent 1 is off → score 0; top2 of [2, 0, 1] → 2, 4
  assert.deepEqual(Array.from(codes.idx), [0, 2, 4]);
  assertClose(codes.val, [0.5, 2, 1]);
});

Deno.test("selectTopK breaks ties toward the lower index and clamps at zero", () => {
  const pre = Float32Array.from([1, 3, 3, 2, -1, -2, -0.5, -3]);
  const codes = selectTopK(pre, 2, 4, 2);
  assert.deepEqual(Array.from(codes.idx), [1, 2, 2, 0]);
  assertClose(codes.val, [3, 3, 0, 0]);
});

Deno.test("selectBatchTopK takes the k·B largest over the batch and caps each row at K", () => {
  // B = 2, n = 4, k = 2 → 4 winners: 9, 8, 7 (row 0) and the tie 5 (row 0 idx 3 vs row 1 idx 0 → row 0)
  const pre = Float32Array.from([9, 8, 7, 5, 5, 1, -1, 0]);
  const c = selectBatchTopK(pre, 2, 4, 2, 3);
  // row 0 has 4 winners, keeps its 3 largest; row 1 has none
  assert.deepEqual(Array.from(c.idx), [0, 1, 2, UNUSED_SLOT, UNUSED_SLOT, UNUSED_SLOT]);
  assertClose(c.val, [9, 8, 7, 0, 0, 0]);
  assert.equal(c.minKept, 7);
});

Deno.test("levelReconstructions: the last level equals decode, levels add layers in order", () => {
  const d = 3;
  const decW = randn(5 * d, 1);
  const bDec = Float32Array.from([1, 2, 3]);
  const idx = Uint32Array.from([4, 0, UNUSED_SLOT]);
  const val = Float32Array.from([2, 0.5, 0]);
  const layer = Uint32Array.from([0, 0, 1, 1, 1]);
  const [l0, l1] = levelReconstructions(idx, val, 1, 3, decW, bDec, d, layer, 2);
  const full = decode(idx, val, 1, 3, decW, bDec, d);
  assertClose(l1, full);
  assertClose(l0, [0, 1, 2].map((j) => bDec[j] + 0.5 * decW[j]));
});

Deno.test("adamStep matches hand-computed values over two steps", () => {
  const p = Float32Array.from([1]);
  const m = new Float32Array(1);
  const v = new Float32Array(1);
  adamStep(p, Float32Array.from([0.5]), m, v, 1, 0.1);
  assertClose(m, [0.05]);
  assertClose(v, [0.00025], { rtol: 1e-6 });
  assertClose(p, [0.9], { atol: 1e-7 }); // m̂ = 0.5, √v̂ = 0.5
  adamStep(p, Float32Array.from([-0.5]), m, v, 2, 0.1);
  const mHat = -0.005 / 0.19;
  const vHat = (0.999 * 0.00025 + 0.001 * 0.25) / (1 - 0.999 ** 2);
  assertClose(p, [0.9 - 0.1 * mHat / Math.sqrt(vHat)], { atol: 1e-6 });
});

Deno.test("renormRows and removeParallelGrad on hand cases", () => {
  const w = Float32Array.from([3, 4, 0, 0, 2, 0]);
  renormRows(w, 3, 2);
  assertClose(w, [0.6, 0.8, 0, 0, 1, 0]);
  const g = Float32Array.from([2, 3, 1, 1, 5, -7]);
  removeParallelGrad(g, Float32Array.from([1, 0, 0, 0, 0.6, 0.8]), 3, 2);
  // row 0 loses its x part; row 1 (zero row) is unchanged; row 2: g − (g·u)u with g·u = −2.6
  assertClose(g, [0, 3, 1, 1, 5 + 2.6 * 0.6, -7 + 2.6 * 0.8], { atol: 1e-6 });
});

Deno.test("geometricMedian minimises the sum of distances (better than the mean and nearby points)", () => {
  const N = 9;
  const d = 3;
  const pts = randn(N * d, 4);
  pts.set([20, 20, 20], 0); // an outlier pulls the mean, not the median
  const med = geometricMedian(pts, N, d);
  const cost = (y: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < N; i++) {
      let q = 0;
      for (let j = 0; j < d; j++) q += (pts[i * d + j] - y[j]) ** 2;
      s += Math.sqrt(q);
    }
    return s;
  };
  const mean = [0, 1, 2].map((j) =>
    Array.from({ length: N }, (_, i) => pts[i * d + j]).reduce((a, b) => a + b) / N
  );
  assert.ok(cost(med) < cost(mean) - 1);
  for (let j = 0; j < d; j++) {
    for (const h of [1e-3, -1e-3]) {
      const y = Array.from(med);
      y[j] += h;
      assert.ok(cost(med) <= cost(y) + 1e-6, `moving coordinate ${j} by ${h} lowers the cost`);
    }
  }
});

Deno.test("initParams: unit decoder rows, tied encoder, seeded; tree balanced by default", () => {
  const c = makeConfig({ arch: "tree", dIn: 7, layers: [4, 6, 9], kPerLayer: [1, 1, 1], seed: 42 });
  assert.equal(c.initTree, "balanced");
  const a = initParams(c);
  const b = initParams(c);
  assert.deepEqual(a.decW, b.decW);
  assert.deepEqual(a.encW, a.decW);
  for (let f = 0; f < 19; f++) {
    let s = 0;
    for (let j = 0; j < 7; j++) s += a.decW[f * 7 + j] ** 2;
    assertClose([s], [1], { atol: 1e-6 });
  }
  assert.deepEqual(Array.from(a.parents[0]), [0, 0, 0, 0]);
  // Balanced: the o_l earlier features share the children (±1) in contiguous blocks; no root.
  assert.deepEqual(Array.from(a.parents[1]), [0, 0, 1, 2, 2, 3]);
  assert.deepEqual(Array.from(a.parents[2]), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  const big = initParams(makeConfig({ arch: "tree", dIn: 3, layers: [6, 24], kPerLayer: [1, 1] }));
  assert.deepEqual(Array.from(childCounts(makeTree([6, 24], big.parents), 1)), [
    4,
    4,
    4,
    4,
    4,
    4,
    0,
  ]);
});

Deno.test("initParams: random tree parents are uniform over [0, o_l], the root included", () => {
  const c = makeConfig({
    arch: "tree",
    dIn: 3,
    layers: [4, 400, 900],
    kPerLayer: [1, 1, 1],
    seed: 42,
    initTree: "random",
  });
  const a = initParams(c);
  assert.deepEqual(a.parents, initParams(c).parents);
  assert.ok(a.parents[1].every((p) => p >= 0 && p <= 4));
  assert.ok(a.parents[2].every((p) => p >= 0 && p <= 404));
  const root1 = a.parents[1].filter((p) => p === 4).length;
  assert.ok(root1 > 40 && root1 < 120, `layer 1 root children ${root1} (expected ~80 of 400)`);
  assert.ok(a.parents[2].some((p) => p >= 4 && p < 404), "layer 2 reaches past layer 0");
  assert.throws(
    () =>
      makeConfig({
        arch: "tree",
        dIn: 3,
        layers: [2, 2],
        kPerLayer: [1, 1],
        initTree: "x" as never,
      }),
    /initTree "x" is unknown; use one of balanced, random/,
  );
});

Deno.test("Rng state resumes the exact sequence", () => {
  const r = new Rng(123);
  r.normal();
  const saved = r.state;
  const want = [r.next(), r.normal(), r.int(10)];
  const again = new Rng(saved);
  assert.deepEqual([again.next(), again.normal(), again.int(10)], want);
});

Deno.test("validateConfig names the bad field", () => {
  assert.throws(
    () => makeConfig({ arch: "topk", dIn: 4, layers: [8], k: 9 }),
    /k = 9 exceeds the number of features n = 8/,
  );
  assert.throws(
    () => makeConfig({ arch: "tree", dIn: 4, layers: [4, 8], kPerLayer: [2, 9] }),
    /kPerLayer\[1\] = 9 exceeds the 8 features of layer 1/,
  );
  assert.throws(
    () => makeConfig({ arch: "tree", dIn: 4, layers: [4, 8], kPerLayer: [2] }),
    /kPerLayer has 1 entries/,
  );
  assert.throws(
    () => makeConfig({ arch: "topk", dIn: 4, layers: [4, 8], k: 2 }),
    /topk takes one layer/,
  );
  assert.throws(
    () => makeConfig({ arch: "tree", dIn: 4, layers: [4, 8], kPerLayer: [1, 1], auxAlpha: [0.1] }),
    /auxAlpha has 1 entries; tree needs 2/,
  );
  assert.throws(() => makeConfig({ arch: "topk", dIn: 0, layers: [4], k: 1 }), /dIn = 0/);
  assert.deepEqual(
    makeConfig({ arch: "tree", dIn: 4, layers: [4, 8], kPerLayer: [2, 1] }).auxAlpha,
    [1 / 32, 0],
  );
});

Deno.test("ReferenceEngine trains: loss falls, decoder stays unit norm, bDec set on step 0, state round-trips", async () => {
  const d = 8;
  const B = 32;
  const c = makeConfig({
    arch: "batchtopk",
    dIn: d,
    layers: [16],
    k: 3,
    lr: 1e-2,
    deadTokens: 64,
    seed: 1,
  });
  const eng = new ReferenceEngine(c);
  const x = randn(B * d, 77).map((v, i) => v + (i % d)); // per-token offset exercises standardisation
  const first = await eng.step(x, B);
  const s1 = await eng.readState();
  assert.ok(s1.bDec.some((v) => v !== 0));
  assert.ok(s1.threshold > 0);
  let last = first;
  for (let i = 0; i < 30; i++) last = await eng.step(x, B);
  assert.ok(last.loss < 0.8 * first.loss, `loss ${first.loss} → ${last.loss}`);
  assert.equal(last.step, 31);
  const s = await eng.readState();
  for (let f = 0; f < 16; f++) {
    let q = 0;
    for (let j = 0; j < d; j++) q += s.decW[f * d + j] ** 2;
    assertClose([q], [1], { atol: 1e-5 });
  }
  const copy = new ReferenceEngine(c, s);
  assert.deepEqual(await copy.reconstruct(x, B), await eng.reconstruct(x, B));
  assert.deepEqual(await copy.step(x, B), await eng.step(x, B));
});

Deno.test("ReferenceEngine tree step reports per-layer L0 = k_l and dead fractions", async () => {
  const c = makeConfig({
    arch: "tree",
    dIn: 6,
    layers: [4, 8],
    kPerLayer: [2, 1],
    deadTokens: 10,
    seed: 3,
  });
  const eng = new ReferenceEngine(c);
  const stats = await eng.step(randn(20 * 6, 5), 20);
  assert.equal(stats.mainLoss.length, 2);
  assert.equal(stats.auxLoss.length, 2);
  assert.ok(stats.l0PerLayer[0] <= 2 && stats.l0PerLayer[0] > 0);
  assert.ok(stats.l0PerLayer[1] <= 1);
  assertClose([stats.l0], [stats.l0PerLayer[0] + stats.l0PerLayer[1]]);
  assert.equal(stats.deadFraction.length, 2);
  assert.equal(stats.fireCounts.length, 12);
  assertClose([stats.fvu], [stats.mainLoss[1]]);
});

Deno.test("ReferenceEngine TopK recovers planted sparse directions: FVU < 0.1, ≥ 90% found", async () => {
  const d = 32, m = 24, n = 48, B = 256, active = 3;
  const rng = new Rng(7);
  // true directions: unit norm and zero-mean, so per-token standardisation keeps them intact
  const dirs = rng.fillNormal(new Float32Array(m * d));
  for (let i = 0; i < m; i++) {
    const row = dirs.subarray(i * d, (i + 1) * d);
    const mu = row.reduce((a, b) => a + b, 0) / d;
    row.forEach((v, j) => (row[j] = v - mu));
    const norm = Math.hypot(...row);
    row.forEach((v, j) => (row[j] = v / norm));
  }
  const batch = () => {
    const x = new Float32Array(B * d);
    for (let b = 0; b < B; b++) {
      const chosen = new Set<number>();
      while (chosen.size < active) chosen.add(rng.int(m));
      for (const f of chosen) {
        const a = 1 + rng.next();
        for (let j = 0; j < d; j++) x[b * d + j] += a * dirs[f * d + j];
      }
      for (let j = 0; j < d; j++) x[b * d + j] += 0.01 * rng.normal();
    }
    return x;
  };
  const c = makeConfig({
    arch: "topk",
    dIn: d,
    layers: [n],
    k: active,
    lr: 3e-3,
    deadTokens: 5000,
    auxK: 8,
    seed: 1,
  });
  const eng = new ReferenceEngine(c);
  let fvu = 1;
  for (let s = 0; s < 600; s++) fvu = (await eng.step(batch(), B)).fvu;
  const { decW } = await eng.readState();
  let found = 0;
  for (let i = 0; i < m; i++) {
    let best = -1;
    for (let f = 0; f < n; f++) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += dirs[i * d + j] * decW[f * d + j];
      best = Math.max(best, dot);
    }
    if (best > 0.9) found++;
  }
  assert.ok(fvu < 0.1, `fvu ${fvu}`);
  assert.ok(found >= 0.9 * m, `recovered ${found}/${m}`);
});
