import assert from "node:assert/strict";
import { DataError } from "../../lib/errors.ts";
import { expectedCosines } from "../../lib/synth/directions.ts";
import {
  isActive,
  type SynthBatch,
  SynthGenerator,
  type SynthParams,
} from "../../lib/synth/generator.ts";
import { type FeatureTree, parseTree, treeFromParams } from "../../lib/synth/tree.ts";
import { toyTree } from "./_toy_tree.ts";
import { initParams } from "../../lib/sae/reference/init.ts";
import { makeConfig } from "../../lib/sae/config.ts";

const PARAMS: SynthParams = {
  dIn: 24,
  tokens: 40_000,
  noise: 0.05,
  magnitudeStd: 0.2,
  epsilon: 0.3,
  siblingEpsilon: 0.2,
  seed: 7,
};

function paramTree(exclusive: boolean): FeatureTree {
  return parseTree(
    treeFromParams({
      branching: [4, 3, 2],
      topMass: 1.2,
      childMass: 0.8,
      zipf: 0.7,
      exclusive,
      binary: false,
    }),
  );
}

function allBatches(gen: SynthGenerator, rows: number): SynthBatch[] {
  return [...gen.batches(rows)];
}

function dot(a: Float32Array, i: number, j: number, d: number): number {
  let s = 0;
  for (let k = 0; k < d; k++) s += a[i * d + k] * a[j * d + k];
  return s;
}

for (const exclusive of [false, true]) {
  Deno.test(`generator (${exclusive ? "exclusive" : "independent"} children): firing rates match the tree within sampling error`, () => {
    const tree = paramTree(exclusive);
    const gen = new SynthGenerator(tree, PARAMS);
    const batches = allBatches(gen, 4096);
    assert.equal(gen.produced, PARAMS.tokens);
    assert.equal(batches.reduce((s, b) => s + b.rows, 0), PARAMS.tokens);
    const T = PARAMS.tokens;
    const rates = gen.empiricalRates();
    const expected = gen.expectedRates();
    assert.ok(gen.emptyProbability > 0.05, "the tree has empty draws, so redrawing matters");
    for (let f = 0; f < gen.features; f++) {
      const p = expected[f];
      assert.ok(Math.abs(p - tree.nominalRates[f] / (1 - gen.emptyProbability)) < 1e-12);
      const tol = 5 * Math.sqrt(p * (1 - p) / T) + 1e-4;
      assert.ok(
        Math.abs(rates[f] - p) < tol,
        `feature ${f} (${tree.features[f].path}): rate ${rates[f]} vs nominal ${p}`,
      );
    }
    // Conditional rate of a child given its parent = the child's active_prob.
    const both = new Float64Array(gen.features);
    for (const b of batches) {
      for (let r = 0; r < b.rows; r++) {
        for (let f = 0; f < gen.features; f++) {
          const p = tree.parents[f];
          if (
            p >= 0 && isActive(b.active, gen.width, r, f) && isActive(b.active, gen.width, r, p)
          ) both[f]++;
        }
      }
    }
    for (let f = 0; f < gen.features; f++) {
      const p = tree.parents[f];
      if (p < 0) continue;
      const nParent = gen.fireCounts[p];
      const q = tree.features[f].activeProb;
      const cond = both[f] / nParent;
      assert.ok(
        Math.abs(cond - q) < 5 * Math.sqrt(q * (1 - q) / nParent) + 1e-3,
        `P(${f} | ${p}) = ${cond} vs ${q}`,
      );
    }
  });
}

Deno.test("generator: a child never fires without its parent and exclusive siblings never fire together", () => {
  for (const tree of [paramTree(true), paramTree(false), parseTree(toyTree())]) {
    const gen = new SynthGenerator(tree, { ...PARAMS, tokens: 20_000 });
    const groups = new Map<number, number[]>();
    tree.features.forEach((node) => {
      if (node.exclusiveChildren) {
        groups.set(node.feature, node.children.filter((c) => c.isReadOut).map((c) => c.feature));
      }
    });
    let childFirings = 0;
    for (const b of gen.batches(2048)) {
      for (let r = 0; r < b.rows; r++) {
        for (let f = 0; f < gen.features; f++) {
          if (!isActive(b.active, gen.width, r, f)) continue;
          const p = tree.parents[f];
          if (p >= 0) {
            childFirings++;
            assert.ok(
              isActive(b.active, gen.width, r, p),
              `row ${b.start + r}: feature ${f} fired without parent ${p}`,
            );
          }
        }
        for (const [p, kids] of groups) {
          const on = kids.filter((c) => isActive(b.active, gen.width, r, c)).length;
          assert.ok(on <= 1, `row ${b.start + r}: ${on} exclusive children of ${p} fired`);
        }
      }
    }
    assert.ok(childFirings > 1000, "the test must exercise children");
  }
});

Deno.test("generator: empty rows are redrawn by default; with keepEmpty their share matches emptyProbability", () => {
  const tree = parseTree(toyTree());
  const want = 0.85 ** 3 * 0.95 ** 8;
  const T = 30_000;
  const kept = new SynthGenerator(tree, { ...PARAMS, tokens: T, keepEmpty: true });
  assert.ok(Math.abs(kept.emptyProbability - want) < 1e-12);
  const b = kept.batch(T);
  let empty = 0;
  for (let r = 0; r < T; r++) {
    if (b.active.subarray(r * kept.width, (r + 1) * kept.width).every((x) => x === 0)) empty++;
  }
  assert.ok(
    Math.abs(empty / T - want) < 5 * Math.sqrt(want * (1 - want) / T),
    `empty share ${empty / T} vs ${want}`,
  );
  const rates = kept.empiricalRates();
  tree.nominalRates.forEach((p, f) =>
    assert.ok(Math.abs(rates[f] - p) < 5 * Math.sqrt(p * (1 - p) / T) + 1e-4)
  );
  const redrawn = new SynthGenerator(tree, { ...PARAMS, tokens: T }).batch(T);
  for (let r = 0; r < T; r++) {
    assert.ok(redrawn.active.subarray(r * kept.width, (r + 1) * kept.width).some((x) => x !== 0));
  }
  assert.throws(
    () =>
      new SynthGenerator(
        parseTree({ active_prob: 1, is_read_out: false, children: [{ active_prob: 1e-4 }] }),
        PARAMS,
      ),
    (e: Error) => e instanceof DataError && e.message.includes("--keep-empty"),
  );
  // emptyProbability through a non-read-out child of an exclusive node with its own children.
  const nested = parseTree({
    active_prob: 1,
    is_read_out: false,
    mutually_exclusive_children: true,
    children: [{ active_prob: 0.5, is_read_out: false, children: [{ active_prob: 0.4 }] }, {
      active_prob: 0.3,
    }],
  });
  assert.ok(
    Math.abs(
      new SynthGenerator(nested, { ...PARAMS, keepEmpty: true }).emptyProbability -
        (0.2 + 0.5 * 0.6),
    ) < 1e-12,
  );
});

Deno.test("generator: the toy tree's exclusive 'none' child leaves the parent alone 40% of the time", () => {
  const tree = parseTree(toyTree());
  const gen = new SynthGenerator(tree, { ...PARAMS, tokens: 30_000 });
  let parentOn = 0;
  let alone = 0;
  for (const b of gen.batches(4096)) {
    for (let r = 0; r < b.rows; r++) {
      if (!isActive(b.active, gen.width, r, 0)) continue;
      parentOn++;
      if (![1, 2, 3].some((c) => isActive(b.active, gen.width, r, c))) alone++;
    }
  }
  const frac = alone / parentOn;
  assert.ok(Math.abs(frac - 0.4) < 5 * Math.sqrt(0.24 / parentOn), `alone ${frac}`);
});

Deno.test("directions: unit norm, centred, and ε-mixing cosines equal the documented formula", () => {
  for (const [ep, es] of [[0.3, 0.2], [0, 0], [0.6, 0.5]]) {
    const tree = paramTree(false);
    const d = PARAMS.dIn;
    const gen = new SynthGenerator(tree, { ...PARAMS, tokens: 1, epsilon: ep, siblingEpsilon: es });
    const v = gen.directions;
    const want = expectedCosines({ epsilon: ep, siblingEpsilon: es });
    assert.ok(tree.features.length > d, "more features than dimensions (superposition)");
    let checkedSiblings = 0;
    for (let f = 0; f < gen.features; f++) {
      assert.ok(Math.abs(dot(v, f, f, d) - 1) < 1e-6, `norm² of ${f}`);
      let sum = 0;
      for (let j = 0; j < d; j++) sum += v[f * d + j];
      assert.ok(Math.abs(sum) < 1e-5, `feature ${f} is centred`);
      const p = tree.parents[f];
      if (p < 0) continue;
      assert.ok(
        Math.abs(dot(v, f, p, d) - want.childParent) < 1e-5,
        `cos(child ${f}, parent ${p}) = ${dot(v, f, p, d)}`,
      );
      for (let g = 0; g < f; g++) {
        if (tree.parents[g] !== p) continue;
        checkedSiblings++;
        assert.ok(
          Math.abs(dot(v, f, g, d) - want.siblings) < 1e-5,
          `cos(sibling ${f}, ${g}) = ${dot(v, f, g, d)} vs ${want.siblings}`,
        );
      }
    }
    assert.ok(checkedSiblings > 10);
  }
});

Deno.test("generator: rows are Σ magnitude·direction + noise; binary features have magnitude 1", () => {
  const tree = parseTree(
    treeFromParams({
      branching: [3, 2],
      topMass: 1,
      childMass: 0.7,
      zipf: 0,
      exclusive: false,
      binary: true,
    }),
  );
  const d = 16;
  const gen = new SynthGenerator(tree, { ...PARAMS, dIn: d, noise: 0, tokens: 500 });
  const b = gen.batch(500);
  for (let r = 0; r < b.rows; r++) {
    for (let j = 0; j < d; j++) {
      let want = 0;
      for (let f = 0; f < gen.features; f++) {
        if (isActive(b.active, gen.width, r, f)) want += gen.directions[f * d + j];
      }
      assert.ok(Math.abs(b.x[r * d + j] - want) < 1e-5, `row ${r} dim ${j}`);
    }
  }
  // Non-binary magnitudes vary: the norm of single-feature rows is not always 1.
  const nb = new SynthGenerator(paramTree(false), {
    ...PARAMS,
    noise: 0,
    tokens: 2000,
    magnitudeStd: 0.3,
  });
  const x = nb.batch(2000);
  const norms: number[] = [];
  for (let r = 0; r < x.rows; r++) {
    let on = 0;
    for (let f = 0; f < nb.features; f++) if (isActive(x.active, nb.width, r, f)) on++;
    if (on === 1) norms.push(Math.hypot(...x.x.subarray(r * PARAMS.dIn, (r + 1) * PARAMS.dIn)));
  }
  const mean = norms.reduce((a, c) => a + c) / norms.length;
  const sd = Math.sqrt(norms.reduce((a, c) => a + (c - mean) ** 2, 0) / norms.length);
  assert.ok(
    Math.abs(mean - 1) < 0.05 && Math.abs(sd - 0.3) < 0.05,
    `magnitude mean ${mean} sd ${sd}`,
  );
});

Deno.test("generator: same seed, same data; directions do not depend on the token count; noise has the set std", () => {
  const tree = paramTree(true);
  const a = new SynthGenerator(tree, PARAMS).batch(300);
  const b = new SynthGenerator(tree, PARAMS).batch(300);
  assert.deepEqual(a.x, b.x);
  assert.deepEqual(a.active, b.active);
  const other = new SynthGenerator(tree, { ...PARAMS, tokens: 10 });
  assert.deepEqual(other.directions, new SynthGenerator(tree, PARAMS).directions);
  const c = new SynthGenerator(tree, { ...PARAMS, seed: 8 }).batch(300);
  assert.notDeepEqual(a.x, c.x);
  // Rows with nothing active are pure noise.
  const g = new SynthGenerator(tree, { ...PARAMS, noise: 0.1, tokens: 5000, keepEmpty: true });
  const batch = g.batch(5000);
  let s = 0;
  let count = 0;
  for (let r = 0; r < batch.rows; r++) {
    if (batch.active.subarray(r * g.width, (r + 1) * g.width).some((x) => x !== 0)) continue;
    for (let j = 0; j < PARAMS.dIn; j++) s += batch.x[r * PARAMS.dIn + j] ** 2;
    count += PARAMS.dIn;
  }
  assert.ok(
    count > 1000 && Math.abs(Math.sqrt(s / count) - 0.1) < 0.01,
    `noise std ${Math.sqrt(s / count)}`,
  );
});

Deno.test("generator parameters are validated with the field named", () => {
  const tree = paramTree(false);
  const bad = (p: Partial<SynthParams>, field: string) =>
    assert.throws(
      () => new SynthGenerator(tree, { ...PARAMS, ...p }),
      (e: Error) => e instanceof DataError && e.message.includes(field),
    );
  bad({ epsilon: 1 }, "epsilon must be in [0, 1)");
  bad({ siblingEpsilon: -0.1 }, "sibling_epsilon");
  bad({ dIn: 2 }, "d_in");
  bad({ tokens: 0 }, "tokens");
  bad({ noise: -1 }, "noise");
});

Deno.test("directions: an SAE initialised with the data's seed does not start on the true directions", () => {
  const tree = paramTree(false);
  const d = PARAMS.dIn;
  for (const seed of [0, 7]) {
    const gen = new SynthGenerator(tree, { ...PARAMS, tokens: 1, seed });
    const m = gen.features;
    const sae = initParams(makeConfig({ arch: "topk", dIn: d, layers: [m], k: 2, seed }));
    // Row i of the initial decoder against true feature i: random unit vectors in R^24 have
    // |cos| ~ 0.2; a shared random stream would put them near 1.
    let maxCos = 0;
    for (let f = 0; f < m; f++) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += sae.decW[f * d + j] * gen.directions[f * d + j];
      maxCos = Math.max(maxCos, Math.abs(dot));
    }
    assert.ok(
      maxCos < 0.9,
      `seed ${seed}: initial decoder row matches its true direction (cos ${maxCos})`,
    );
  }
});
