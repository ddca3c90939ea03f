import assert from "node:assert/strict";
import {
  GroundTruthCodeStats,
  learnedParentsFromTree,
  matchFeatures,
  scoreAgainstDataset,
  scoreGroundTruth,
} from "../../lib/eval/ground_truth.ts";
import { join } from "node:path";
import { DataError } from "../../lib/errors.ts";
import { writeSynthDataset } from "../../lib/synth/dataset.ts";
import { type SparseCodes, UNUSED_SLOT } from "../../lib/eval/sparse_codes.ts";
import { isActive, type SynthBatch, SynthGenerator } from "../../lib/synth/generator.ts";
import { parseTree, treeFromParams } from "../../lib/synth/tree.ts";
import { randn, rng } from "../_util.ts";

const D = 20;

/** A small generated dataset: 3 top-level × 3 × 2 tree (39 features > d = 20). */
function dataset(tokens = 6000) {
  const tree = parseTree(
    treeFromParams({
      branching: [3, 3, 2],
      topMass: 1.2,
      childMass: 0.8,
      zipf: 0.5,
      exclusive: true,
      binary: false,
    }),
  );
  const gen = new SynthGenerator(tree, {
    dIn: D,
    tokens,
    noise: 0.01,
    magnitudeStd: 0.1,
    epsilon: 0.3,
    siblingEpsilon: 0.2,
    seed: 3,
  });
  const batch: SynthBatch = gen.batch(tokens);
  return { tree, gen, batch, m: gen.features, W: gen.width };
}

/** Codes of an SAE whose latent perm[f] is true feature f: val 1 where f is active (optionally dropped). */
function codesFromActivity(
  active: Uint8Array,
  rows: number,
  m: number,
  W: number,
  perm: Int32Array,
  drop: (r: number, f: number) => boolean = () => false,
): SparseCodes {
  const K = 16;
  const idx = new Uint32Array(rows * K).fill(UNUSED_SLOT);
  const val = new Float32Array(rows * K);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let f = 0; f < m; f++) {
      if (!isActive(active, W, r, f) || drop(r, f)) continue;
      assert.ok(s < K, "test codes need more slots");
      idx[r * K + s] = perm[f];
      val[r * K + s] = 1;
      s++;
    }
  }
  return { idx, val, rows, k: K };
}

/** A learned decoder [n, d] whose row perm[f] is true direction f and the other rows random. */
function permutedDecoder(dirs: Float32Array, m: number, n: number, seed: number) {
  const r = rng(seed);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const perm = Int32Array.from(order.slice(0, m));
  const dec = randn(n * D, seed + 1);
  for (let f = 0; f < m; f++) dec.set(dirs.subarray(f * D, (f + 1) * D), perm[f] * D);
  return { dec, perm };
}

Deno.test("a perfect SAE scores 1 recovered, 1 parent accuracy (tree and coverage), 0 absorption", () => {
  const { tree, gen, batch, m, W } = dataset();
  const n = m + 11;
  const { dec, perm } = permutedDecoder(gen.directions, m, n, 5);
  const learnedParents = new Int32Array(n).fill(-1);
  for (let f = 0; f < m; f++) {
    if (tree.parents[f] >= 0) learnedParents[perm[f]] = perm[tree.parents[f]];
  }
  const codes = codesFromActivity(batch.active, batch.rows, m, W, perm);
  const truth = { directions: gen.directions, parents: tree.parents };
  const s = scoreGroundTruth({
    decoder: dec,
    d: D,
    truth,
    learnedParents,
    codes,
    activity: batch.active,
    activityWidth: W,
  });
  assert.deepEqual(Array.from(s.match), Array.from(perm));
  assert.ok(Math.abs(s.meanCosine - 1) < 1e-5);
  assert.equal(s.recovered, 1);
  assert.equal(s.parentSource, "tree");
  assert.equal(s.parentPairs, m - 3);
  assert.equal(s.parentAccuracy, 1);
  assert.equal(s.absorption, 0);
  assert.ok(s.absorptionEvents > 500);
  // Flat SAE: parents come from activation coverage of the codes, and are right too.
  const flat = scoreGroundTruth({
    decoder: dec,
    d: D,
    truth,
    codes,
    activity: batch.active,
    activityWidth: W,
  });
  assert.equal(flat.parentSource, "coverage");
  assert.equal(flat.parentAccuracy, 1);
  // Without codes there is no coverage and no absorption.
  const bare = scoreGroundTruth({ decoder: dec, d: D, truth });
  assert.equal(bare.parentAccuracy, null);
  assert.equal(bare.absorption, null);
  assert.equal(bare.recovered, 1);
});

Deno.test("permuted learned parents score the fraction of children that keep their parent", () => {
  const { tree, gen, m } = dataset(10);
  const n = m;
  const { dec, perm } = permutedDecoder(gen.directions, m, n, 9);
  const truth = { directions: gen.directions, parents: tree.parents };
  for (const seed of [1, 2, 3]) {
    const children = Array.from({ length: m }, (_, f) => f).filter((f) => tree.parents[f] >= 0);
    const shuffled = children.map((c) => tree.parents[c]);
    const r = rng(seed);
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
    }
    const learnedParents = new Int32Array(n).fill(-1);
    let keep = 0;
    children.forEach((c, i) => {
      learnedParents[perm[c]] = perm[shuffled[i]];
      if (shuffled[i] === tree.parents[c]) keep++;
    });
    assert.ok(keep < children.length, "the shuffle must move some parents");
    const s = scoreGroundTruth({ decoder: dec, d: D, truth, learnedParents });
    assert.equal(s.parentPairs, children.length);
    assert.equal(s.parentAccuracy, keep / children.length);
  }
});

Deno.test("planted absorption: a parent latent silenced on its first child's tokens scores the expected share", () => {
  const { tree, gen, batch, m, W } = dataset();
  const n = m;
  const { dec, perm } = permutedDecoder(gen.directions, m, n, 4);
  const truth = { directions: gen.directions, parents: tree.parents };
  // Each level-1 parent's first child absorbs it: the parent latent is silent whenever that
  // (leaf) child fires. Top-level latents stay intact, so coverage parents stay well defined.
  const firstChild = new Map<number, number>();
  for (let f = 0; f < m; f++) {
    const p = tree.parents[f];
    if (p >= 0 && tree.levels[p] === 1 && !firstChild.has(p)) firstChild.set(p, f);
  }
  assert.equal(firstChild.size, 9);
  const on = (r: number, f: number) => isActive(batch.active, W, r, f);
  const drop = (r: number, f: number) => firstChild.has(f) && on(r, firstChild.get(f)!);
  const fires = (r: number, f: number) => on(r, f) && !drop(r, f);
  let events = 0;
  let absorbed = 0;
  for (let r = 0; r < batch.rows; r++) {
    for (let p = 0; p < m; p++) {
      const kids = Array.from({ length: m }, (_, f) => f).filter((f) =>
        tree.parents[f] === p && on(r, f)
      );
      if (!on(r, p) || kids.length === 0) continue;
      events++;
      if (!fires(r, p) && kids.some((c) => fires(r, c))) absorbed++;
    }
  }
  const codes = codesFromActivity(batch.active, batch.rows, m, W, perm, drop);
  const s = scoreGroundTruth({
    decoder: dec,
    d: D,
    truth,
    codes,
    activity: batch.active,
    activityWidth: W,
  });
  assert.equal(s.absorptionEvents, events);
  assert.ok(absorbed > 100 && absorbed < events);
  assert.equal(s.absorption, absorbed / events);
  // Coverage now finds the wrong parent for every absorbing child (the parent never co-fires),
  // and the right one for the others.
  const pairs = m - 3;
  assert.equal(s.parentAccuracy, (pairs - firstChild.size) / pairs);
});

Deno.test("absorption on a hand-made case: 4 events, 1 absorbed; a child latent firing alone is not absorption", () => {
  // True features: 0 = parent, 1 and 2 = its children, 3 = unrelated top-level. Latent i = feature i.
  const parents = Int32Array.from([-1, 0, 0, -1]);
  const rowsActive = [[0, 1], [0, 2], [0, 1], [0, 2], [0], [3]];
  const rowsFiring = [[1], [0, 2], [0, 1], [0], [], [3]];
  const W = 1;
  const active = Uint8Array.from(rowsActive.map((fs) => fs.reduce((b, f) => b | (1 << f), 0)));
  const K = 2;
  const idx = new Uint32Array(rowsFiring.length * K).fill(UNUSED_SLOT);
  const val = new Float32Array(rowsFiring.length * K);
  rowsFiring.forEach((fs, r) =>
    fs.forEach((f, s) => {
      idx[r * K + s] = f;
      val[r * K + s] = 0.5;
    })
  );
  // Row 3: parent latent fires, child latent silent → not absorption (child missed). Row 0: absorbed.
  const stats = new GroundTruthCodeStats(parents, Int32Array.from([0, 1, 2, 3]), 4, W);
  stats.add(
    { idx: idx.subarray(0, 3 * K), val: val.subarray(0, 3 * K), rows: 3, k: K },
    active.subarray(0, 3),
  );
  stats.add(
    { idx: idx.subarray(3 * K), val: val.subarray(3 * K), rows: 3, k: K },
    active.subarray(3),
  );
  assert.equal(stats.events, 4);
  assert.equal(stats.absorbed, 1);
  assert.equal(stats.tokens, 6);
  // A value at or below the fire threshold does not fire.
  const quiet = new GroundTruthCodeStats(parents, Int32Array.from([0, 1, 2, 3]), 4, W);
  quiet.add(
    { idx: Uint32Array.from([1, 0]), val: Float32Array.from([0.5, 5e-4]), rows: 1, k: 2 },
    Uint8Array.from([0b11]),
  );
  assert.equal(quiet.absorbed, 1);
});

Deno.test("Hungarian matching equals brute force over all assignments (small random cases)", () => {
  const d = 5;
  for (let seed = 1; seed <= 6; seed++) {
    const m = 3 + (seed % 2);
    const n = 5;
    const a = randn(m * d, seed);
    const b = randn(n * d, 100 + seed);
    const { match, cosine } = matchFeatures(b, a, d);
    const cos = (i: number, j: number) => {
      let s = 0, na = 0, nb = 0;
      for (let k = 0; k < d; k++) {
        s += a[i * d + k] * b[j * d + k];
        na += a[i * d + k] ** 2;
        nb += b[j * d + k] ** 2;
      }
      return s / Math.sqrt(na * nb);
    };
    let best = -Infinity;
    const used = new Array(n).fill(false);
    const search = (i: number, total: number) => {
      if (i === m) {
        best = Math.max(best, total);
        return;
      }
      for (let j = 0; j < n; j++) {
        if (used[j]) continue;
        used[j] = true;
        search(i + 1, total + cos(i, j));
        used[j] = false;
      }
    };
    search(0, 0);
    const got = Array.from(match).reduce((s, j, i) => s + cos(i, j), 0);
    assert.ok(Math.abs(got - best) < 1e-9, `seed ${seed}: ${got} vs ${best}`);
    assert.equal(new Set(match).size, m);
    match.forEach((j, i) => assert.ok(Math.abs(cosine[i] - cos(i, j)) < 1e-6));
  }
});

Deno.test("fewer learned than true features: the unmatched count as cosine 0", () => {
  const dirs = new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 1]);
  const dec = new Float32Array([0, 1, 0, 1, 0, 0]);
  const s = scoreGroundTruth({
    decoder: dec,
    d: 3,
    truth: { directions: dirs, parents: Int32Array.from([-1, 0, 0]) },
  });
  assert.deepEqual(Array.from(s.match), [1, 0, -1]);
  assert.ok(Math.abs(s.meanCosine - 2 / 3) < 1e-9);
  assert.ok(Math.abs(s.recovered - 2 / 3) < 1e-9);
});

Deno.test("learnedParentsFromTree maps the contract layout (value o_l = root) to global parents", () => {
  const parents = learnedParentsFromTree({
    offsets: [0, 3, 5],
    parents: [Int32Array.from([0, 0, 0]), Int32Array.from([1, 3]), Int32Array.from([5, 4, 0])],
  });
  assert.deepEqual(Array.from(parents), [-1, -1, -1, 1, -1, -1, 4, 0]);
});

Deno.test("scoreAgainstDataset reads truth.json + activity from a dataset folder; null without truth", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { tree, gen } = dataset(10);
    const tokens = 2000;
    await writeSynthDataset(join(dir, "ds"), { tree, params: { ...gen.params, tokens } });
    const again = new SynthGenerator(tree, { ...gen.params, tokens });
    const batch = again.batch(tokens);
    const perm = Int32Array.from({ length: again.features }, (_, f) => f);
    const codes = codesFromActivity(batch.active, 1500, again.features, again.width, perm);
    const learnedParents = tree.parents.slice();
    const s = await scoreAgainstDataset(join(dir, "ds"), {
      decoder: again.directions,
      d: D,
      codes,
      learnedParents,
    });
    assert.ok(s);
    assert.equal(s.recovered, 1);
    assert.equal(s.parentAccuracy, 1);
    assert.equal(s.absorption, 0);
    assert.ok(s.absorptionEvents > 100);
    assert.equal(await scoreAgainstDataset(dir, { decoder: again.directions, d: D }), null);
    await assert.rejects(
      () => scoreAgainstDataset(join(dir, "ds"), { decoder: new Float32Array(8 * 4), d: 4 }),
      (e: Error) =>
        e instanceof DataError && e.message.includes("truth.json") &&
        e.message.includes("d_in is 20"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
