/** `inspect`: building blocks against brute-force oracles, the terminal views and the CLI's errors. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { rng } from "../_util.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { initState } from "../../lib/sae/engine.ts";
import { freshProgress } from "../../lib/train/trainer.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { loadSae, saveCheckpoint } from "../../lib/train/checkpoint.ts";
import { DataError } from "../../lib/errors.ts";
import { FIRE_THRESHOLD, UNUSED_SLOT } from "../../lib/eval/sparse_codes.ts";
import { TopExamples } from "../../lib/inspect/top_examples.ts";
import { SiblingPairs } from "../../lib/inspect/sibling_pairs.ts";
import { ancestors, featureTree, subtree } from "../../lib/inspect/structure.ts";
import { childGeometry } from "../../lib/inspect/geometry.ts";
import { contextLine, contextOf } from "../../lib/inspect/contexts.ts";
import { idLabeler } from "../../lib/inspect/token_text.ts";
import { openInspection } from "../../lib/inspect/inspection.ts";
import type { FeatureProfile } from "../../lib/inspect/profile.ts";
import { formatFeature, formatTree } from "../../lib/inspect/terminal.ts";
import { readMetricsLog } from "../../lib/inspect/metrics_log.ts";
import { isTrueAncestor, shortPath } from "../../lib/inspect/truth_match.ts";
import { escapeHtml } from "../../lib/inspect/html.ts";
import { parseInspectArgs, runInspect, spec } from "../../cli/inspect.ts";
import { parseCommand, UsageError } from "../../cli/args.ts";
import {
  D,
  handCheckpoint,
  synthDataset,
  textDataset,
  trainRun,
  TREE_CONFIG,
  withTempDir,
} from "./_fixture.ts";

const VIEW = { contexts: 5, neighbours: 3, tokens: 5 };

Deno.test("TopExamples keeps each feature's M highest values, highest first", () => {
  const r = rng(1);
  const n = 5, m = 7;
  const top = new TopExamples(n, m);
  const all: { row: number; value: number }[][] = Array.from({ length: n }, () => []);
  for (let row = 0; row < 300; row++) {
    const f = Math.floor(r() * n);
    const value = Math.fround(Math.round(r() * 50) / 10); // f32 like the codes; many ties
    top.offer(f, row, value);
    all[f].push({ row, value });
  }
  for (let f = 0; f < n; f++) {
    const want = all[f].map((e) => e.value).sort((a, b) => b - a).slice(0, m);
    assert.deepEqual(top.get(f).map((e) => e.value), want, `feature ${f}`);
    for (const e of top.get(f)) {
      assert.ok(all[f].some((x) => x.row === e.row && x.value === e.value));
    }
  }
});

Deno.test("SiblingPairs IoU equals the IoU of the siblings' token sets", () => {
  // features 0,1 roots; 2,3,4 children of 0; 5,6 children of 1
  const parentOf = Int32Array.from([-1, -1, 0, 0, 0, 1, 1]);
  const n = parentOf.length, rows = 200, k = 3;
  const r = rng(7);
  const idx = new Uint32Array(rows * k), val = new Float32Array(rows * k);
  const sets: Set<number>[] = Array.from({ length: n }, () => new Set());
  for (let b = 0; b < rows; b++) {
    const picked = new Set<number>();
    for (let s = 0; s < k; s++) {
      const f = Math.floor(r() * n);
      const v = r() < 0.2 ? 0 : r();
      if (picked.has(f) || r() < 0.1) {
        idx[b * k + s] = UNUSED_SLOT;
        continue;
      }
      picked.add(f);
      idx[b * k + s] = f;
      val[b * k + s] = v;
      if (v > FIRE_THRESHOLD) sets[f].add(b);
    }
  }
  const pairs = new SiblingPairs(parentOf);
  pairs.add({ idx, val, rows, k });
  const count = sets.map((s) => s.size);
  for (const [a, b] of [[2, 3], [2, 4], [3, 4], [5, 6]]) {
    const both = [...sets[a]].filter((t) => sets[b].has(t)).length;
    assert.equal(pairs.both(a, b), both);
    assert.equal(pairs.iou(a, b, count), both / (sets[a].size + sets[b].size - both));
  }
  assert.equal(pairs.both(2, 5), 0, "cousins are not siblings");
});

Deno.test("featureTree: parents, children, roots, subtrees; flat SAEs are all roots", () => {
  const config = makeConfig({ arch: "tree", dIn: 4, layers: [2, 3, 2], kPerLayer: [1, 1, 1] });
  // layer 1 (offset 2): parents 0, root(2), 1; layer 2 (offset 5): parents 2, 4
  const parents = [new Int32Array([0, 0]), Int32Array.from([0, 2, 1]), Int32Array.from([2, 4])];
  const t = featureTree(config, parents);
  assert.deepEqual(Array.from(t.parentOf), [-1, -1, 0, -1, 1, 2, 4]);
  assert.deepEqual(t.childrenOf[0], [2]);
  assert.deepEqual(t.roots, [0, 1, 3]);
  assert.deepEqual(subtree(t, 1), [1, 4, 6]);
  assert.deepEqual(subtree(t, 1, 1), [1, 4]);
  assert.deepEqual(ancestors(t, 5), [0, 2]);
  const flat = featureTree(makeConfig({ arch: "topk", dIn: 4, layers: [6], k: 2 }), []);
  assert.deepEqual(flat.roots, [0, 1, 2, 3, 4, 5]);
});

Deno.test("childGeometry: each child's encoder arrow points at the cluster of tokens where it fires", () => {
  // Two children firing on tokens along orthogonal directions u (child 1) and v (child 2).
  const d = 8, per = 20;
  const r = rng(5);
  const u = new Float32Array(d), v = new Float32Array(d);
  u[0] = 1;
  v[1] = 1;
  const x = new Float32Array(2 * per * d);
  const rowsOf: number[][] = [[], []];
  for (let i = 0; i < 2 * per; i++) {
    const dir = i < per ? u : v;
    for (let j = 0; j < d; j++) x[i * d + j] = 3 * dir[j] + 0.3 * (r() - 0.5) + (j === 7 ? 1 : 0);
    rowsOf[i < per ? 0 : 1].push(i);
  }
  const config = makeConfig({ arch: "tree", dIn: d, layers: [1, 2], kPerLayer: [1, 1] });
  const tree = featureTree(config, [new Int32Array(1), new Int32Array(2)]);
  const encW = new Float32Array(3 * d);
  encW.set(u, d);
  encW.set(v, 2 * d);
  const samples = [
    { rows: [], values: [] },
    ...rowsOf.map((rows) => ({ rows, values: rows.map(() => 1) })),
  ];
  const profile = { samples } as unknown as FeatureProfile;
  const g = childGeometry(0, tree, profile, x, d, { encW, bDec: new Float32Array(d) });
  assert.ok(typeof g !== "string", String(g));
  assert.equal(g.points.length, 2 * per);
  for (const child of [1, 2]) {
    const pts = g.points.filter((p) => p.child === child);
    const cx = pts.reduce((s, p) => s + p.pc1, 0) / pts.length;
    const cy = pts.reduce((s, p) => s + p.pc2, 0) / pts.length;
    const arrow = g.arrows.find((e) => e.child === child)!;
    const cos: number = (arrow.pc1 * cx + arrow.pc2 * cy) /
      (Math.hypot(arrow.pc1, arrow.pc2) * Math.hypot(cx, cy));
    assert.ok(cos > 0.9, `child ${child}: arrow/cluster cosine ${cos}`);
  }
  assert.ok(g.explained[0] > 0.5);
  const one = childGeometry(
    0,
    tree,
    { samples: [samples[0], samples[1], samples[0]] } as unknown as FeatureProfile,
    x,
    d,
    {
      encW,
      bDec: new Float32Array(d),
    },
  );
  assert.equal(one, "fewer than two of its children fired on the inspected tokens");
});

Deno.test("contextOf stays inside the row's context window and marks the active token", () => {
  const tokens = {
    ids: Uint32Array.from([10, 11, 12, 13, 20, 21, 22]),
    docs: new Uint32Array(7),
    positions: Uint32Array.from([0, 1, 2, 3, 0, 1, 2]), // two windows: rows 0-3 and 4-6
  };
  const lab = idLabeler("ids");
  assert.equal(contextLine(contextOf({ tokens, rows: 7 }, 5, lab, 10, 10)!), "#20⟦#21⟧#22");
  assert.equal(contextLine(contextOf({ tokens, rows: 7 }, 2, lab, 1, 10)!), "#11⟦#12⟧#13");
  assert.equal(contextOf({ tokens: null, rows: 7 }, 2, lab), null);
  assert.equal(shortPath("root.children[2].children[0]"), "2.0");
  const parents = Int32Array.from([-1, 0, 1, -1]);
  assert.deepEqual([
    isTrueAncestor(parents, 0, 2),
    isTrueAncestor(parents, 2, 0),
    isTrueAncestor(parents, 3, 2),
  ], [
    true,
    false,
    false,
  ]);
  assert.equal(escapeHtml(`<b a="1">&'`), "&#60;b a=&#34;1&#34;&#62;&#38;&#39;");
});

Deno.test("synthetic run: densities match a direct encode; views show token indices and true features", async () => {
  await withTempDir(async (dir) => {
    const data = await synthDataset(dir);
    const run = join(dir, "run");
    await trainRun(data, run);
    const ins = await openInspection(run, {
      requireData: true,
      tokens: 1000,
      batchSize: 300,
      engine: "reference",
      seed: 0,
      notice: () => {},
    });
    assert.equal(ins.profile!.tokens, 1000);
    // Oracle: encode the same rows in one call and count firings.
    const sae = await loadSae(run);
    const enc = await new ReferenceEngine(sae.config, sae.state).encode(ins.data!.x, 1000);
    const count = new Float64Array(12);
    enc.idx.forEach((f, s) => {
      if (f !== UNUSED_SLOT && enc.val[s] > FIRE_THRESHOLD) count[f]++;
    });
    assert.deepEqual(Array.from(ins.profile!.stats.count), Array.from(count));
    const f = count.indexOf(Math.max(...count));
    const text = formatFeature(ins, f, VIEW);
    assert.match(text, new RegExp(`^feature ${f} · layer \\d`));
    assert.match(text, new RegExp(`density: [0-9.]+% \\(${count[f]} of 1000 tokens\\)`));
    assert.match(text, /matched: true \d+ \(path [\d.]+|root, cos/);
    assert.match(text, /token \d+: true features/);
    assert.match(text, /nearest features by decoder cosine:\n {2}\d+ [-0-9.]+ \(layer \d\)/);
    const top = ins.profile!.top.get(f)[0];
    assert.ok(text.includes(`${top.value.toFixed(3)}  token ${top.row}:`));
    const tree = formatTree(ins, { depth: Infinity }).split("\n");
    assert.equal(tree.length, 1 + 12, "header + one line per feature");
    assert.match(tree[0], /^tree SAE · layers \[4, 8\] · 12 features · 1000 tokens of /);
    const parent = ins.tree.roots.find((r) => ins.tree.childrenOf[r].length > 0)!;
    const child = ins.tree.childrenOf[parent][0];
    const t = ins.data!.truth!.truth;
    const ok = isTrueAncestor(t.parents, ins.truth!.trueOf[parent], ins.truth!.trueOf[child]);
    const childLine = tree.find((l) => l.includes(`─ #${child}  `))!;
    assert.ok(
      childLine.endsWith(ok ? "✓ in its true branch" : "✗ outside its true branch"),
      childLine,
    );
    const shallow = formatTree(ins, { depth: 0 }).split("\n");
    assert.equal(shallow.length, 1 + ins.tree.roots.length);
    assert.ok(
      shallow.slice(1).every((l) => /^#\d+ {2}L\d {2}[0-9.]+% {2}true \d+/.test(l)),
      shallow.join("\n"),
    );
    const { points, badLines } = await readMetricsLog(run);
    assert.deepEqual(points.map((p) => p.step), [2, 4, 6, 8, 10, 12]);
    assert.equal(badLines, 0);
  });
});

Deno.test("text dataset: contexts are decoded with the model's tokenizer, active token marked", async () => {
  await withTempDir(async (dir) => {
    const { data, ids } = await textDataset(dir);
    const run = join(dir, "ck");
    await handCheckpoint(run, data);
    const ins = await openInspection(run, {
      requireData: true,
      tokens: 10_000,
      batchSize: 64,
      engine: "reference",
      seed: 0,
      notice: () => {},
    });
    assert.ok(ins.labeler.decoded, ins.labeler.note);
    assert.equal(ins.labeler.label(ids[1]), "The");
    const f = ins.profile!.stats.count.indexOf(Math.max(...ins.profile!.stats.count));
    const text = formatFeature(ins, f, VIEW);
    const { row } = ins.profile!.top.get(f)[0];
    const active = ins.labeler.label(ids[row]).replace(/\n/g, "⏎");
    assert.ok(text.includes(`⟦${active}⟧`), text);
    assert.match(text, /top tokens: "[^"]*" ×\d+/);
    assert.match(formatTree(ins, { depth: 0 }), /#\d+ {2}L0 {2}[0-9.]+% {2}"/);
    // The explorer through the CLI: pages with marked contexts, geometry plots capped.
    const out = join(dir, "explorer");
    const code = await runInspect(
      parseCommand(spec, [
        run,
        "--html",
        out,
        "--engine",
        "reference",
        "-q",
        "--max-geometry",
        "1",
      ]),
    );
    assert.equal(code, 0);
    const index = await Deno.readTextFile(join(out, "index.html"));
    assert.equal(index.match(/data-feature="/g)?.length, 12);
    const page = await Deno.readTextFile(join(out, "features", `${f}.html`));
    assert.ok(page.includes(`<mark>${escapeHtml(active)}</mark>`));
    assert.match(page, /<svg[^>]*>/);
    let plots = 0;
    for await (const e of Deno.readDir(join(out, "features"))) {
      const html = await Deno.readTextFile(join(out, "features", e.name));
      if (html.includes('id="geometry"')) plots++;
    }
    const count = ins.profile!.stats.count;
    const parents = ins.tree.childrenOf.filter((k) => k.filter((c) => count[c] > 0).length >= 2);
    assert.equal(plots, Math.min(1, parents.length), "--max-geometry 1 caps the plots");
  });
});

Deno.test("bad input: feature out of range, missing dataset (tree still works), wrong width, bad flags", async () => {
  await withTempDir(async (dir) => {
    const { data } = await textDataset(dir);
    const run = join(dir, "ck");
    await handCheckpoint(run, data);
    const argv = (...a: string[]) => parseCommand(spec, [run, "--engine", "reference", "-q", ...a]);
    await assert.rejects(
      () => runInspect(argv("--feature", "12")),
      (e: Error) =>
        e instanceof DataError &&
        e.message === "--feature 12: no such feature; this SAE has features 0..11",
    );
    await assert.rejects(
      () => runInspect(argv("--tree", "--root=-1")),
      /--root -1: no such feature; this SAE has features 0\.\.11/,
    );
    // The dataset the SAE was trained on is gone.
    await Deno.remove(data, { recursive: true });
    await assert.rejects(
      () => runInspect(argv("--feature", "3")),
      (e: Error) =>
        e instanceof DataError &&
        e.message.includes(`says the SAE was trained on ${data}, but there is no dataset there`) &&
        e.message.includes(
          "pass the activations with --data DIR (or --structure-only for the tree",
        ),
    );
    const ins = await openInspection(run, {
      requireData: false,
      tokens: 10,
      batchSize: 8,
      seed: 0,
      notice: () => {},
    });
    assert.equal(ins.profile, null);
    const tree = formatTree(ins, { depth: Infinity });
    assert.match(tree, /no data \(.*says the SAE was trained on/);
    assert.equal(tree.split("\n").length, 13);
    assert.equal(await runInspect(argv("--tree")), 0);
    const structure = await openInspection(run, {
      requireData: true,
      noData: true,
      tokens: 10,
      batchSize: 8,
      seed: 0,
    });
    assert.match(
      formatFeature(structure, 5, VIEW),
      /no activation data: --structure-only: no activation data read\nnearest features/,
    );
    // A checkpoint that records no dataset at all (e.g. a released one).
    const bare = join(dir, "bare");
    await saveCheckpoint(bare, {
      config: TREE_CONFIG,
      state: initState(TREE_CONFIG),
      progress: freshProgress(8, 8),
    });
    await assert.rejects(
      () => runInspect(parseCommand(spec, [bare, "--html", join(dir, "x"), "-q"])),
      new RegExp(
        `${bare}/config.json records no dataset \\(metadata.data\\); pass the activations with --data DIR`,
      ),
    );
    // --data that is not a dataset, and a dataset of another width.
    await assert.rejects(
      () => runInspect(argv("--feature", "0", "--data", run)),
      new RegExp(`--data ${run}: no manifest\\.json there; pass an activation dataset folder`),
    );
    const wide = join(dir, "wide");
    const w = await ActivationWriter.create(wide, { dIn: D + 1, dtype: "f32", provenance: {} });
    await w.append(new Float32Array(4 * (D + 1)));
    await w.close();
    await assert.rejects(
      () => runInspect(argv("--feature", "0", "--data", wide)),
      /activations have d_in = 17 but the SAE expects d_in = 16; pass the dataset it was trained on/,
    );
    // Command-line mistakes.
    assert.throws(
      () => parseInspectArgs(argv()),
      /say what to show: --feature F, --tree or --html OUT/,
    );
    assert.throws(() => parseInspectArgs(parseCommand(spec, ["--tree"])), UsageError);
    assert.throws(
      () => parseInspectArgs(argv("--tree", "--engine", "tpu")),
      /--engine must be gpu or reference/,
    );
  });
});
