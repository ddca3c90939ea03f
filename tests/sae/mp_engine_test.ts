/** MpEngine (lib/sae/mp/engine.ts): learning a planted dictionary, and GPU pursuit = TS twin. */
import assert from "node:assert/strict";
import { assertClose, randn, testGpu } from "../_util.ts";
import { Rng } from "../../lib/util/rng.ts";
import { makeMpConfig, MpEngine } from "../../lib/sae/mp/engine.ts";
import { createMpEngine } from "../../lib/sae/mp/factory.ts";
import { mpPursuit } from "../../lib/sae/mp/reference.ts";
import { standardize } from "../../lib/sae/reference/ops.ts";

/** m planted unit, zero-mean directions in d dims; each token mixes `active` of them. */
function plantedData(d: number, m: number, active: number, seed: number) {
  const rng = new Rng(seed);
  const dirs = rng.fillNormal(new Float32Array(m * d));
  for (let i = 0; i < m; i++) {
    const row = dirs.subarray(i * d, (i + 1) * d);
    const mu = row.reduce((a, b) => a + b, 0) / d;
    row.forEach((v, j) => (row[j] = v - mu)); // zero mean: standardisation keeps the direction
    const norm = Math.hypot(...row);
    row.forEach((v, j) => (row[j] = v / norm));
  }
  const batch = (B: number) => {
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
  return { dirs, batch };
}

/** How many planted directions have a learned atom with cosine > 0.9. */
function recovered(dirs: Float32Array, decW: Float32Array, m: number, n: number, d: number) {
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
  return found;
}

Deno.test("MpEngine recovers a planted dictionary: ≥ 90% of atoms with cosine > 0.9, FVU < 0.1", async () => {
  const d = 32, m = 24, n = 48, B = 256, active = 3;
  const { dirs, batch } = plantedData(d, m, active, 7);
  const config = makeMpConfig({ dIn: d, layers: [n], k: 6, lr: 3e-3, deadTokens: 5000, seed: 1 });
  const eng = MpEngine.create(config);
  const untrained = await eng.readState();
  assert.ok(recovered(dirs, untrained.decW, m, n, d) < 0.2 * m, "random init finds few atoms");
  let stats;
  for (let s = 0; s < 400; s++) stats = await eng.step(batch(B), B);
  const { decW, encW, bDec } = await eng.readState();
  const found = recovered(dirs, decW, m, n, d);
  assert.ok(stats!.fvu < 0.1, `fvu ${stats!.fvu}`);
  assert.ok(found >= 0.9 * m, `recovered ${found}/${m}`);
  assert.deepEqual(encW, decW, "tied weights");
  assert.deepEqual(Array.from(bDec), new Array(d).fill(0), "no decoder bias");
  // adaptive L0: between 1 and k, reported per step
  assert.ok(stats!.l0 >= 1 && stats!.l0 <= 6, `l0 ${stats!.l0}`);
  assert.deepEqual(stats!.auxLoss, [0]);
});

Deno.test("MpEngine: GPU pursuit equals the TS twin, and GPU and CPU engines train alike", async () => {
  const gpu = await testGpu();
  const d = 19, n = 37, B = 23, k = 5;
  const config = makeMpConfig({ dIn: d, layers: [n], k, lr: 1e-2, seed: 3 });
  const cpu = MpEngine.create(config);
  const onGpu = MpEngine.create(config, undefined, { gpu });
  try {
    const x = randn(B * d, 5);
    const state = await cpu.readState();
    const twin = mpPursuit(standardize(x, B, d).xs, state.decW, B, d, n, k);
    const codes = await onGpu.encode(x, B);
    assert.deepEqual(codes.idx, twin.idx);
    assertClose(codes.val, twin.val, { atol: 1e-4, rtol: 1e-4, label: "forward codes" });
    for (let s = 0; s < 3; s++) {
      const batch = randn(B * d, 10 + s);
      const a = await cpu.step(batch, B);
      const b = await onGpu.step(batch, B);
      assertClose([b.fvu], [a.fvu], { atol: 1e-4, rtol: 1e-4, label: `fvu step ${s}` });
    }
    assertClose((await onGpu.readState()).decW, (await cpu.readState()).decW, {
      atol: 1e-4,
      rtol: 1e-3,
      label: "decW after 3 steps",
    });
    assertClose(await onGpu.reconstruct(x, B), await cpu.reconstruct(x, B), {
      atol: 1e-3,
      rtol: 1e-3,
      label: "reconstruction",
    });
  } finally {
    onGpu.destroy();
  }
});

Deno.test("makeMpConfig validates like topk and names the field", () => {
  assert.throws(
    () => makeMpConfig({ dIn: 4, layers: [3], k: 5 }),
    /k = 5 exceeds the number of features n = 3/,
  );
  assert.throws(() => makeMpConfig({ dIn: 4, layers: [3, 3], k: 1 }), /takes one layer/);
});

Deno.test("createMpEngine: reference → TypeScript pursuit; default → WebGPU pursuit", async () => {
  const config = makeMpConfig({ dIn: 6, layers: [9], k: 2 });
  const notes: string[] = [];
  const ref = await createMpEngine("reference", config, undefined, (l) => notes.push(l));
  assert.match(ref.description, /TypeScript on the CPU/);
  const gpu = await createMpEngine(undefined, config, undefined, (l) => notes.push(l));
  assert.match(gpu.description, /pursuit on WebGPU/);
  assert.deepEqual(notes, []);
  gpu.destroy();
});
