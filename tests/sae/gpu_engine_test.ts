/**
 * GpuEngine against ReferenceEngine: one step (weights after Adam) and a few steps in a row
 * agree within 1e-4 relative for topk, batchtopk, matryoshka and a 3-layer tree with AuxK
 * active, on the storage paths (d = 24) and the texture GEMM/decode paths (d = 64); inference
 * (encode, reconstruct) agrees; steps are bitwise reproducible; the tree gate holds on GPU codes;
 * row chunking gives the same step; and a TopK SAE learns planted directions on synthetic data.
 */
import assert from "node:assert/strict";
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import { makeConfig, type SaeConfig, type SaeConfigInput } from "../../lib/sae/config.ts";
import { initState, type SaeState, type StepStats, type StepTicket } from "../../lib/sae/engine.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { GpuEngine } from "../../lib/sae/gpu_engine.ts";
import { subgroupGemmSupported } from "../../lib/sae/ops/encoder_gemm.ts";
import { denseAuxGemm } from "../../lib/sae/ops/aux_dense.ts";
import { FIRE_THRESHOLD, UNUSED_SLOT } from "../../lib/sae/reference/constants.ts";

/** Largest |a| of an array: tolerances scale with it. */
function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function closeState(got: SaeState, want: SaeState, label: string) {
  const rel = (g: Float32Array, w: Float32Array, name: string) =>
    assertClose(g, w, { rtol: 1e-4, atol: 1e-4 * maxAbs(w) + 1e-7, label: `${label}: ${name}` });
  rel(got.encW, want.encW, "encW");
  rel(got.decW, want.decW, "decW");
  rel(got.bDec, want.bDec, "bDec");
  rel(got.adam.decW.m, want.adam.decW.m, "decW m");
  rel(got.adam.encW.v, want.adam.encW.v, "encW v");
  assert.deepEqual(got.tokensSinceFired, want.tokensSinceFired, `${label}: tokensSinceFired`);
  assert.equal(got.step, want.step);
}

function closeStats(got: StepStats, want: StepStats, label: string) {
  assertClose([got.loss, got.fvu, ...got.mainLoss, ...got.auxLoss], [
    want.loss,
    want.fvu,
    ...want.mainLoss,
    ...want.auxLoss,
  ], { rtol: 1e-4, atol: 1e-6, label: `${label}: loss terms` });
  assertClose(got.l0PerLayer, want.l0PerLayer, { atol: 0, rtol: 0, label: `${label}: L0` });
  assertClose(got.deadFraction, want.deadFraction, { atol: 0, rtol: 0, label: `${label}: dead` });
  assert.deepEqual(got.fireCounts, want.fireCounts, `${label}: fire counts`);
}

/**
 * A state whose every other feature is already dead, so AuxK runs from the first step. The
 * encoder is untied from the decoder: with tied weights a row's only active feature has an
 * exactly-zero encoder gradient in exact arithmetic (its residual is orthogonal to the row), and
 * Adam's first step turns the float noise there into ±lr, which no tolerance can compare.
 */
function stateWithDead(config: SaeConfig): SaeState {
  const s = initState(config);
  const noise = randn(s.encW.length, config.seed + 99);
  for (let i = 0; i < s.encW.length; i++) s.encW[i] += 0.2 * noise[i];
  for (let f = 0; f < s.tokensSinceFired.length; f += 2) s.tokensSinceFired[f] = config.deadTokens;
  return s;
}

/** Activations with a little structure (a shared offset and varied scales per row). */
function batch(B: number, d: number, seed: number): Float32Array {
  const x = randn(B * d, seed);
  const r = rng(seed);
  for (let b = 0; b < B; b++) {
    const s = 0.5 + 2 * r();
    for (let j = 0; j < d; j++) x[b * d + j] = x[b * d + j] * s + 0.3 * (j % 5);
  }
  return x;
}

const D = 24;
const CONFIGS: [string, SaeConfigInput][] = [
  ["topk", {
    arch: "topk",
    dIn: D,
    layers: [53],
    k: 4,
    auxK: 40,
    deadTokens: 64,
    lr: 1e-3,
    seed: 1,
  }],
  ["batchtopk", {
    arch: "batchtopk",
    dIn: D,
    layers: [47],
    k: 3,
    auxK: 5,
    deadTokens: 64,
    lr: 1e-3,
    seed: 2,
  }],
  [
    "matryoshka",
    {
      arch: "matryoshka",
      dIn: D,
      layers: [9, 17, 25],
      k: 5,
      auxK: 7,
      deadTokens: 64,
      lr: 1e-3,
      seed: 3,
    },
  ],
  [
    "tree",
    {
      arch: "tree",
      dIn: D,
      layers: [7, 13, 29],
      kPerLayer: [3, 2, 2],
      auxK: 4,
      auxAlpha: [1 / 32, 0.1, 0],
      deadTokens: 64,
      lr: 1e-3,
      seed: 4,
    },
  ],
];

for (const [name, input] of CONFIGS) {
  Deno.test(`GpuEngine equals ReferenceEngine over 3 steps with AuxK active (${name})`, async () => {
    const gpu = await testGpu();
    const config = makeConfig(input);
    const start = stateWithDead(config);
    const ref = new ReferenceEngine(config, start);
    const eng = await GpuEngine.create(config, start, { gpu });
    try {
      const B = 37;
      for (let t = 0; t < 3; t++) {
        const x = batch(B, D, 100 + t);
        const want = await ref.step(x, B);
        const got = await eng.step(x, B);
        closeStats(got, want, `${name} step ${t + 1}`);
        closeState(await eng.readState(), await ref.readState(), `${name} step ${t + 1}`);
        if (t === 0) assert.ok(want.auxLoss.some((v) => v > 0), "AuxK term is active");
      }
    } finally {
      eng.destroy();
    }
  });
}

Deno.test("GpuEngine on the texture paths (d = 64: texture GEMM and decode on software adapters) equals ReferenceEngine", async () => {
  const gpu = await testGpu();
  // Blocks of 8 decoder rows: AuxK decodes block by block (topk 7 blocks, batchtopk 6, tree layer
  // 1: 2; layer 0 fits one block and decodes at once; layer 2 has no AuxK).
  // n = 128 (a multiple of 64): the selections read pre through its texture mirror.
  const cases = [CONFIGS[0], CONFIGS[1], CONFIGS[3]].flatMap(([name, input]) => [
    { name, input, auxBlockBytes: undefined },
    { name: `${name} blocked AuxK`, input, auxBlockBytes: 8 * 64 * 4 },
  ]).concat([{
    name: "topk n=128 pre texture",
    input: { ...CONFIGS[0][1], layers: [128] },
    auxBlockBytes: undefined,
  }, {
    // 9 chunks of 64 features (the last of 4) ≥ k: the top-k starts from the GEMM's chunk maxima.
    name: "topk n=516 chunk maxima",
    input: { ...CONFIGS[0][1], layers: [516] },
    auxBlockBytes: undefined,
  }, {
    // Matryoshka's levels are feature prefixes: decoded from the decW texture (decode_levels16_tex).
    name: "matryoshka",
    input: CONFIGS[2][1],
    auxBlockBytes: undefined,
  }, {
    // n = 128: the gated selections read pre through its texture, which the GEMM writes directly.
    name: "tree n=128 pre texture",
    input: { ...CONFIGS[3][1], layers: [16, 48, 64] },
    auxBlockBytes: undefined,
  }, {
    // A first layer of whole chunks (4 of 64 features): its top-k starts from the chunk maxima,
    // the later layers from the child lists.
    name: "tree n=1024 chunk maxima",
    input: { ...CONFIGS[3][1], layers: [256, 512, 256] },
    auxBlockBytes: undefined,
  }]);
  for (const { name, input, auxBlockBytes } of cases) {
    const config = makeConfig({ ...input, dIn: 64 });
    const start = stateWithDead(config);
    const ref = new ReferenceEngine(config, start);
    const eng = await GpuEngine.create(config, start, { gpu, auxBlockBytes });
    try {
      if (gpu.isFallback) {
        const want = auxBlockBytes === undefined
          ? config.arch === "tree" ? [0, 0, 0] : [0]
          : { topk: [7], batchtopk: [6], tree: [0, 2, 4] }[config.arch as string];
        assert.deepEqual(eng.auxDecodeBlocks, want, `${name}: AuxK decode blocks`);
      }
      for (let t = 0; t < 2; t++) {
        const x = batch(37, 64, 400 + t);
        closeStats(await eng.step(x, 37), await ref.step(x, 37), `${name} d=64 step ${t + 1}`);
        closeState(await eng.readState(), await ref.readState(), `${name} d=64 step ${t + 1}`);
      }
      if (gpu.isFallback) {
        const n = config.layers.reduce((x, y) => x + y, 0);
        assert.equal(eng.readsPreTexture, n % 64 === 0, `${name}: pre texture`);
        assert.equal(
          eng.readsChunkMaxima,
          subgroupGemmSupported(gpu) && (config.arch !== "tree" || config.layers[0] % 64 === 0),
          `${name}: chunk maxima`,
        );
      }
      // BatchTopK inference uses θ in the reference, which the GPU engine does not have yet.
      if (config.arch === "batchtopk") continue;
      const x = batch(19, 64, 500);
      const [ra, rb] = [await eng.reconstruct(x, 19), await ref.reconstruct(x, 19)];
      assertClose(ra, rb, {
        rtol: 1e-4,
        atol: 1e-4 * maxAbs(rb),
        label: `${name} d=64: reconstruction`,
      });
    } finally {
      eng.destroy();
    }
  }
});

Deno.test("GpuEngine: AuxK decode and gradient rows by dense products (few dead) and by sparse sums (many dead) equal ReferenceEngine", async () => {
  const gpu = await testGpu();
  // B and d multiples of 64: the dense path's texture GEMMs can run (software adapters). n = 256
  // with every 8th feature dead: 32 dead ≤ the capacity, dense. n = 2 048 with all but every 8th
  // dead: 1 792 dead > DENSE_AUX_MAX (1 536), sparse.
  const cases = [
    { n: 256, dead: (f: number) => f % 8 === 0, path: "dense" },
    { n: 2048, dead: (f: number) => f % 8 !== 0, path: "sparse" },
  ];
  // Also with the blocked AuxK decode (blocks of 8 dead rows), whose dispatches the forward's plan
  // gates: 4 blocks in the dense case; in the sparse case 224, too many to gate, so the forward
  // keeps the slot-by-slot decode without asking the GPU.
  const runs: {
    n: number;
    dead: (f: number) => boolean;
    path: string;
    auxBlockBytes?: number;
    storage?: boolean;
  }[] = cases.flatMap((c) =>
    [undefined, 8 * 64 * 4].map((auxBlockBytes) => ({ ...c, auxBlockBytes }))
  );
  // As on a GPU (no textures) with the dense path asked for: its products on storage GEMMs; n =
  // 1 024 with every other feature dead puts 512 dead rows past the GEMM's first workgroup rows,
  // which the plan's cut to the dead count must keep.
  runs.push(...cases.map((c) => ({ ...c, storage: true })));
  runs.push({ n: 1024, dead: (f: number) => f % 2 === 1, path: "dense", storage: true });
  for (const { n, dead, path, auxBlockBytes, storage } of runs) {
    const config = makeConfig({
      arch: "topk",
      dIn: 64,
      layers: [n],
      k: 4,
      auxK: 24,
      deadTokens: 1 << 20,
      lr: 1e-3,
      seed: 7,
    });
    const start = stateWithDead(config);
    start.tokensSinceFired.fill(0);
    for (let f = 0; f < n; f++) if (dead(f)) start.tokensSinceFired[f] = config.deadTokens;
    const ref = new ReferenceEngine(config, start);
    const adapter = storage ? { ...gpu, isFallback: false } : gpu;
    if (storage) assert.equal(denseAuxGemm(adapter, 64, 64, true), "storage");
    const opts = { gpu: adapter, auxBlockBytes, ...(storage ? { denseAux: true } : {}) };
    const eng = await GpuEngine.create(config, start, opts);
    const twin = await GpuEngine.create(config, start, opts);
    try {
      if (gpu.isFallback) assert.equal(eng.auxDecodeBlocks[0] > 1, auxBlockBytes !== undefined);
      for (let t = 0; t < 2; t++) {
        const x = batch(64, 64, 700 + t);
        const label = `n=${n}${auxBlockBytes ? " blocked" : ""}${storage ? " storage" : ""} step ${
          t + 1
        }`;
        closeStats(await eng.step(x, 64), await ref.step(x, 64), label);
        closeState(await eng.readState(), await ref.readState(), label);
        const want = gpu.isFallback || storage ? path : "sparse";
        assert.deepEqual(await eng.auxGradientPaths(), [want], `${label}: AuxK gradient path`);
        assert.deepEqual(await eng.auxDecodePaths(), [want], `${label}: AuxK decode path`);
        // Bitwise reproducible: a second engine on the same input, stepped with 2 steps in flight.
        const a = await twin.enqueueStep(x, 64);
        if (t === 1) await a.stats();
      }
      const [s1, s2] = [await eng.readState(), await twin.readState()];
      assert.deepEqual(s2.encW, s1.encW, `n=${n}: encW bitwise`);
      assert.deepEqual(s2.decW, s1.decW, `n=${n}: decW bitwise`);
    } finally {
      eng.destroy();
      twin.destroy();
    }
  }
});

Deno.test("GpuEngine inference (encode, reconstruct) equals ReferenceEngine (topk, matryoshka, tree)", async () => {
  const gpu = await testGpu();
  for (const [name, input] of [CONFIGS[0], CONFIGS[2], CONFIGS[3]]) {
    const config = makeConfig(input);
    const start = stateWithDead(config);
    const ref = new ReferenceEngine(config, start);
    const eng = await GpuEngine.create(config, start, { gpu });
    try {
      await ref.step(batch(37, D, 5), 37);
      await eng.step(batch(37, D, 5), 37);
      await eng.writeState(await ref.readState()); // same weights: compare inference only
      const x = batch(29, D, 6);
      const [a, b] = [await eng.encode(x, 29), await ref.encode(x, 29)];
      assert.equal(a.K, b.K);
      assert.deepEqual(a.idx, b.idx, `${name}: code indices`);
      assertClose(a.val, b.val, { rtol: 1e-4, atol: 1e-5, label: `${name}: code values` });
      const [ra, rb] = [await eng.reconstruct(x, 29), await ref.reconstruct(x, 29)];
      assertClose(ra, rb, {
        rtol: 1e-4,
        atol: 1e-4 * maxAbs(rb),
        label: `${name}: reconstruction`,
      });
    } finally {
      eng.destroy();
    }
  }
});

Deno.test("GpuEngine BatchTopK inference uses the threshold θ once set, like ReferenceEngine", async () => {
  const gpu = await testGpu();
  const config = makeConfig(CONFIGS[1][1]);
  const start = stateWithDead(config);
  const ref = new ReferenceEngine(config, start);
  const eng = await GpuEngine.create(config, start, { gpu });
  try {
    await ref.step(batch(37, D, 5), 37);
    const trained = await ref.readState();
    assert.ok(trained.threshold > 0, "θ is set after a training step");
    // Raise θ so that rows keep different numbers of slots (some fewer than k, some more).
    for (const theta of [trained.threshold, 0.5]) {
      await eng.writeState({ ...trained, threshold: theta });
      await ref.writeState({ ...trained, threshold: theta });
      const x = batch(29, D, 6);
      const [a, b] = [await eng.encode(x, 29), await ref.encode(x, 29)];
      assert.equal(a.K, b.K);
      assert.deepEqual(a.idx, b.idx, `θ=${theta}: code indices`);
      assertClose(a.val, b.val, { rtol: 1e-4, atol: 1e-5, label: `θ=${theta}: code values` });
      const kept = Array.from(
        { length: 29 },
        (_, r) => Array.from(a.val.subarray(r * a.K, (r + 1) * a.K)).filter((v) => v > 0).length,
      );
      assert.ok(new Set(kept).size > 1, `θ=${theta}: rows keep varying counts (${kept})`);
      const [ra, rb] = [await eng.reconstruct(x, 29), await ref.reconstruct(x, 29)];
      assertClose(ra, rb, { rtol: 1e-4, atol: 1e-4 * maxAbs(rb), label: `θ=${theta}: recon` });
    }
  } finally {
    eng.destroy();
  }
});

Deno.test("GpuEngine in row chunks equals one chunk (encoder GEMM + selection per chunk)", async () => {
  const gpu = await testGpu();
  for (const [name, input] of [CONFIGS[0], CONFIGS[1], CONFIGS[3]]) {
    const config = makeConfig(input);
    const start = stateWithDead(config);
    const whole = await GpuEngine.create(config, start, { gpu });
    const chunked = await GpuEngine.create(config, start, { gpu, maxChunkRows: 10 });
    try {
      const x = batch(41, D, 7);
      const a = await whole.step(x, 41);
      const b = await chunked.step(x, 41);
      closeStats(b, a, `${name} chunked`);
      closeState(await chunked.readState(), await whole.readState(), `${name} chunked`);
    } finally {
      whole.destroy();
      chunked.destroy();
    }
  }
});

Deno.test("GpuEngine is bitwise reproducible: same state and batches give identical weights (tree, batchtopk)", async () => {
  const gpu = await testGpu();
  for (const [name, input] of [CONFIGS[1], CONFIGS[3]]) {
    const config = makeConfig(input);
    const start = stateWithDead(config);
    const runs: SaeState[] = [];
    for (let r = 0; r < 2; r++) {
      const eng = await GpuEngine.create(config, start, { gpu });
      try {
        for (let t = 0; t < 2; t++) await eng.step(batch(41, D, 600 + t), 41);
        runs.push(await eng.readState());
      } finally {
        eng.destroy();
      }
    }
    assert.deepEqual(runs[1].encW, runs[0].encW, `${name}: encW`);
    assert.deepEqual(runs[1].decW, runs[0].decW, `${name}: decW`);
    assert.deepEqual(runs[1].bDec, runs[0].bDec, `${name}: bDec`);
    assert.deepEqual(runs[1].adam.encW.v, runs[0].adam.encW.v, `${name}: Adam v`);
  }
});

Deno.test("tree gate holds on GPU codes: no child is active where its parent is not", async () => {
  const gpu = await testGpu();
  const config = makeConfig(CONFIGS[3][1]);
  const eng = await GpuEngine.create(config, stateWithDead(config), { gpu });
  try {
    const B = 64;
    for (let t = 0; t < 3; t++) await eng.step(batch(B, D, 200 + t), B);
    const state = await eng.readState();
    const codes = await eng.encode(batch(B, D, 300), B);
    const off = [0, 7, 20, 49];
    let gatedChildren = 0;
    for (let b = 0; b < B; b++) {
      const val = new Map<number, number>();
      for (let s = 0; s < codes.K; s++) {
        const f = codes.idx[b * codes.K + s];
        if (f !== UNUSED_SLOT) val.set(f, codes.val[b * codes.K + s]);
      }
      for (const [f, v] of val) {
        if (!(v > 0)) continue;
        const l = off.findIndex((o, i) => f >= o && f < off[i + 1]);
        const p = state.parents[l][f - off[l]];
        if (p === off[l]) continue; // root child
        gatedChildren++;
        assert.ok(
          (val.get(p) ?? 0) > FIRE_THRESHOLD,
          `row ${b}: child ${f} active without parent ${p}`,
        );
      }
    }
    assert.ok(gatedChildren > 0, "some non-root children fired");
  } finally {
    eng.destroy();
  }
});

/**
 * Synthetic data: every token is a sparse positive sum of `active` of `m` planted unit
 * directions (orthogonal to the all-ones vector, so per-token standardisation keeps them) plus noise.
 */
function plantedData(d: number, m: number, active: number, seed: number) {
  const dirs = randn(m * d, seed);
  for (let i = 0; i < m; i++) {
    const row = dirs.subarray(i * d, (i + 1) * d);
    const mean = row.reduce((a, b) => a + b, 0) / d;
    let s = 0;
    for (let j = 0; j < d; j++) s += (row[j] -= mean) ** 2;
    for (let j = 0; j < d; j++) row[j] /= Math.sqrt(s);
  }
  const r = rng(seed + 1);
  const sample = (B: number) => {
    const x = randn(B * d, Math.floor(r() * 2 ** 31)).map((v) => 0.02 * v);
    for (let b = 0; b < B; b++) {
      for (let a = 0; a < active; a++) {
        const i = Math.floor(r() * m);
        const c = 0.5 + r();
        for (let j = 0; j < d; j++) x[b * d + j] += c * dirs[i * d + j];
      }
    }
    return x;
  };
  return { dirs, sample };
}

/** Learning settings for the synthetic TopK test (tuned on llvmpipe; see the test name). */
const LEARN = { d: 32, m: 64, n: 128, k: 4, active: 3, B: 256, steps: 600, lr: 3e-3 };

Deno.test(
  `TopK on GpuEngine learns planted directions (d=${LEARN.d}, ${LEARN.m} true, n=${LEARN.n}, k=${LEARN.k}, ` +
    `B=${LEARN.B}, ${LEARN.steps} steps, lr=${LEARN.lr}): FVU < 0.1, ≥ 90% recovered at cos > 0.9`,
  async () => {
    const gpu = await testGpu();
    const { d, m, n, k, B } = LEARN;
    const config = makeConfig({
      arch: "topk",
      dIn: d,
      layers: [n],
      k,
      auxK: 32,
      deadTokens: 20 * B,
      lr: LEARN.lr,
      seed: 11,
    });
    const { dirs, sample } = plantedData(d, m, LEARN.active, 5);
    const eng = await GpuEngine.create(config, undefined, { gpu });
    try {
      let last: StepStats | undefined;
      let fvuSum = 0;
      for (let t = 0; t < LEARN.steps; t++) {
        last = await eng.step(sample(B), B);
        if (t >= LEARN.steps - 20) fvuSum += last.fvu;
      }
      const fvu = fvuSum / 20;
      const { decW } = await eng.readState();
      let recovered = 0;
      for (let i = 0; i < m; i++) {
        let best = -1;
        for (let f = 0; f < n; f++) {
          let c = 0;
          for (let j = 0; j < d; j++) c += dirs[i * d + j] * decW[f * d + j];
          best = Math.max(best, c);
        }
        if (best > 0.9) recovered++;
      }
      console.log(
        `synthetic TopK: FVU ${fvu.toFixed(4)}, recovered ${recovered}/${m}, L0 ${last!.l0}`,
      );
      assert.ok(fvu < 0.1, `FVU ${fvu} < 0.1`);
      assert.ok(recovered >= 0.9 * m, `recovered ${recovered}/${m} ≥ 90%`);
    } finally {
      eng.destroy();
    }
  },
);

for (const timing of ["wall", "timestamps"] as const) {
  Deno.test(`GpuEngine profile (${timing}): phase times for every stage of a step and backward kernel, weights bitwise unchanged`, async () => {
    const gpu = await testGpu();
    if (!gpu.hasTimestamps) throw new Error("the test adapter has no timestamp-query feature");
    const config = makeConfig(CONFIGS[3][1]); // tree with AuxK: every phase runs
    const start = stateWithDead(config);
    const plain = await GpuEngine.create(config, start, { gpu, maxChunkRows: 16 });
    const timed = await GpuEngine.create(config, start, { gpu, maxChunkRows: 16, profile: timing });
    try {
      assert.equal(plain.lastProfile, undefined);
      const x = batch(41, D, 8);
      await plain.step(x, 41);
      await timed.step(x, 41);
      const phases = timed.lastProfile!;
      const labels = [...phases.keys()];
      const backward = labels.filter((l) => l.startsWith("sparse backward: "));
      assert.deepEqual(labels.filter((l) => !backward.includes(l)), [
        "standardize",
        "encoder GEMM",
        "top-k",
        "AuxK selection",
        "sparse decode",
        "AuxK decode",
        "loss sums",
        "adam: decoder rows",
        "adam: encoder, b_dec",
        "dead tracking",
      ]);
      // each backward kernel is a phase of its own, between the loss sums and Adam
      assert.ok(backward.length >= 8, `backward kernels: ${backward}`);
      assert.ok(backward.some((l) => l.includes("reduce_features")), `${backward}`);
      const at = labels.indexOf("loss sums");
      assert.deepEqual(labels.slice(at + 1, at + 1 + backward.length), backward);
      for (const [label, ms] of phases) {
        assert.ok(Number.isFinite(ms) && ms >= 0, `${label}: ${ms}`);
      }
      assert.ok([...phases.values()].reduce((a, b) => a + b) > 0, "some GPU time was measured");
      const [a, b] = [await timed.readState(), await plain.readState()];
      assert.deepEqual(a.encW, b.encW);
      assert.deepEqual(a.decW, b.decW);
      assert.equal(plain.lastProfile, undefined);
    } finally {
      plain.destroy();
      timed.destroy();
    }
  });
}

Deno.test("GpuEngine profileDispatches: every dispatch timed as '<phase>: <entry>', CPU time beside wall time", async () => {
  const gpu = await testGpu();
  const config = makeConfig(CONFIGS[3][1]);
  const eng = await GpuEngine.create(config, stateWithDead(config), {
    gpu,
    maxChunkRows: 16,
    profile: "wall",
    profileDispatches: true,
  });
  try {
    await eng.step(batch(41, D, 8), 41);
    const labels = [...eng.lastProfile!.keys()];
    assert.deepEqual([...eng.lastProfileCpu!.keys()], labels);
    for (const phase of ["standardize", "encoder GEMM", "top-k", "adam: decoder rows"]) {
      assert.ok(
        labels.some((l) => l.startsWith(`${phase}: `) && l.length > phase.length + 2),
        `no dispatch of ${phase}: ${labels}`,
      );
    }
  } finally {
    eng.destroy();
  }
});

Deno.test("GpuEngine setProfile profiles only the steps enqueued while on, behind steps in flight; hostMs gathers the submits' host time", async () => {
  const gpu = await testGpu();
  const config = makeConfig(CONFIGS[0][1]);
  const start = stateWithDead(config);
  const plain = await GpuEngine.create(config, start, { gpu });
  const eng = await GpuEngine.create(config, start, { gpu });
  try {
    const xs = [1, 2, 3, 4].map((i) => batch(41, D, 60 + i));
    const want: StepStats[] = [];
    for (const x of xs) want.push(await plain.step(x, 41));
    const first = await eng.enqueueStep(xs[0], 41);
    assert.equal(eng.lastProfile, undefined);
    assert.ok(eng.hostMs.record > 0 && eng.hostMs.submit > 0, "host time of the first submit");
    eng.setProfile("wall");
    const second = await eng.enqueueStep(xs[1], 41);
    assert.ok(
      first.ready && second.ready,
      "a profiled step returns with its and earlier statistics in",
    );
    const wall = eng.lastProfile!;
    assert.ok(wall.has("encoder GEMM") && wall.has("dead tracking"), `${[...wall.keys()]}`);
    eng.setProfile(false);
    const third = await eng.enqueueStep(xs[2], 41);
    await third.stats();
    assert.equal(eng.lastProfile, wall, "an unprofiled step leaves the last profile as it was");
    eng.setProfile("timestamps");
    const fourth = await eng.enqueueStep(xs[3], 41);
    // Read through a fresh reference: assert.equal above narrowed eng.lastProfile's type.
    const stamped = (eng as { lastProfile?: Map<string, number> }).lastProfile!;
    assert.notEqual(stamped, wall);
    assert.deepEqual([...stamped.keys()], [...wall.keys()]);
    const got = await Promise.all([first, second, third, fourth].map((t) => t.stats()));
    got.forEach((g, i) => assert.deepEqual(g, want[i], `step ${i + 1} stats`));
    const [a, b] = [await eng.readState(), await plain.readState()];
    assert.deepEqual(a.encW, b.encW);
    assert.deepEqual(a.decW, b.decW);
  } finally {
    plain.destroy();
    eng.destroy();
  }
});

Deno.test("GpuEngine takes f16 batches (widened on the GPU): the same stats and weights as their f32 values", async () => {
  const gpu = await testGpu();
  // d = 25 with 41 rows: an odd number of f16 values (the upload's last word half used).
  const cases: [SaeConfigInput, number[]][] = [
    [{ ...CONFIGS[0][1], dIn: 25 }, [41, 41, 30]],
    [CONFIGS[3][1], [29, 29]],
  ];
  for (const [input, sizes] of cases) {
    const config = makeConfig(input);
    const start = stateWithDead(config);
    const wide = await GpuEngine.create(config, start, { gpu });
    const half = await GpuEngine.create(config, start, { gpu });
    try {
      for (let i = 0; i < sizes.length; i++) {
        const x16 = new Float16Array(batch(sizes[i], config.dIn, 70 + i));
        const want = await wide.step(new Float32Array(x16), sizes[i]);
        const got = await half.step(x16, sizes[i]);
        assert.deepEqual(got, want, `${config.arch} step ${i + 1} stats`);
      }
      const [a, b] = [await half.readState(), await wide.readState()];
      assert.deepEqual(a.bDec, b.bDec, "b_dec (set from the first batch)");
      assert.deepEqual(a.encW, b.encW);
      assert.deepEqual(a.decW, b.decW);
    } finally {
      wide.destroy();
      half.destroy();
    }
  }
});

Deno.test("GpuEngine enqueueStep: steps in flight give the same stats and weights as one at a time", async () => {
  const gpu = await testGpu();
  // deadTokens 64 with batches of 41 rows: features die and revive from step to step, so the
  // AuxK slot bound of a step enqueued ahead (counters not yet read back) exceeds the exact count.
  const sizes = [41, 41, 41, 41, 41, 29, 29, 41];
  for (const [name, input] of [CONFIGS[0], CONFIGS[3]]) {
    const config = makeConfig(input);
    const start = stateWithDead(config);
    // Some live features are one batch from dead: the bound counts them, the exact count may not.
    for (let f = 1; f < start.tokensSinceFired.length; f += 4) start.tokensSinceFired[f] = 40;
    const one = await GpuEngine.create(config, start, { gpu });
    const ahead = await GpuEngine.create(config, start, { gpu });
    try {
      const xs = sizes.map((B, i) => batch(B, D, 50 + i));
      const want: StepStats[] = [];
      for (let i = 0; i < sizes.length; i++) want.push(await one.step(xs[i], sizes[i]));
      const tickets = [];
      for (let i = 0; i < sizes.length; i++) tickets.push(await ahead.enqueueStep(xs[i], sizes[i]));
      const got = await Promise.all(tickets.map((t) => t.stats()));
      for (let i = 0; i < sizes.length; i++) {
        assert.deepEqual(got[i], want[i], `${name} step ${i + 1} stats`);
      }
      assert.ok(want.some((s) => s.auxLoss.some((v) => v > 0)), `${name}: AuxK ran`);
      assert.ok(
        want.some((s) => s.deadFraction.some((v, l) => v !== want[0].deadFraction[l])),
        `${name}: the dead set changed during the run`,
      );
      const [a, b] = [await ahead.readState(), await one.readState()];
      assert.deepEqual(a.encW, b.encW, `${name} encW`);
      assert.deepEqual(a.decW, b.decW, `${name} decW`);
      assert.deepEqual(a.adam.encW.v, b.adam.encW.v, `${name} encW v`);
      assert.deepEqual(a.tokensSinceFired, b.tokensSinceFired, `${name} counters`);
      assert.equal(a.step, sizes.length);
    } finally {
      one.destroy();
      ahead.destroy();
    }
  }
});

Deno.test("GpuEngine enqueueStep: a step's readback starts only with the next submit or stats()", async () => {
  const gpu = await testGpu();
  const config = makeConfig(CONFIGS[0][1]);
  const eng = await GpuEngine.create(config, stateWithDead(config), { gpu });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // Deno's mapAsync waits for all submitted work: mapping a step's statistics as soon as it is
  // submitted would keep the GPU idle while the host records the next step.
  const untilReady = async (t: StepTicket) => {
    for (let i = 0; i < 600 && !t.ready; i++) await sleep(10);
    return t.ready;
  };
  try {
    const x = batch(41, D, 9);
    const first = await eng.enqueueStep(x, 41);
    await sleep(100);
    assert.equal(first.ready, false, "nothing has started the first step's readback");
    const second = await eng.enqueueStep(x, 41);
    assert.ok(await untilReady(first), "the second submit started the first step's readback");
    assert.equal((await first.stats()).step, 1);
    await sleep(100);
    assert.equal(second.ready, false, "the first step's stats() left the second's readback alone");
    const stats = await second.stats();
    assert.ok(second.ready);
    assert.equal(stats.step, 2);
  } finally {
    eng.destroy();
  }
});

Deno.test("GpuEngine.destroy drops statistics nobody read instead of mapping them", async () => {
  const gpu = await testGpu();
  const config = makeConfig(CONFIGS[0][1]);
  const eng = await GpuEngine.create(config, stateWithDead(config), { gpu });
  const x = batch(41, D, 9);
  const first = await eng.enqueueStep(x, 41);
  const second = await eng.enqueueStep(x, 41);
  assert.equal((await first.stats()).step, 1);
  eng.destroy();
  await assert.rejects(second.stats(), /destroyed before this step's statistics were read/);
  assert.ok(second.ready);
});

Deno.test("GpuEngine enqueueStep refuses a second call before the first has been submitted", async () => {
  const gpu = await testGpu();
  const config = makeConfig(CONFIGS[0][1]);
  const eng = await GpuEngine.create(config, stateWithDead(config), { gpu });
  try {
    const x = batch(41, D, 9);
    const first = eng.enqueueStep(x, 41);
    await assert.rejects(eng.enqueueStep(x, 41), /await enqueueStep before the next/);
    await (await first).stats();
    assert.equal((await eng.readState()).step, 1, "only the first step ran");
  } finally {
    eng.destroy();
  }
});
