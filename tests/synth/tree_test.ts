import assert from "node:assert/strict";
import { join } from "node:path";
import { DataError } from "../../lib/errors.ts";
import { parseTree, readTreeFile, treeFromParams, treeToJson } from "../../lib/synth/tree.ts";
import { toyTree } from "./_toy_tree.ts";

function throwsNaming(fn: () => unknown, ...parts: string[]) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof DataError, `expected DataError, got ${e}`);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" should mention "${p}"`);
    return true;
  });
}

Deno.test("parseTree numbers the toy tree's read-out features in pre-order with nearest read-out parents", () => {
  const t = parseTree(toyTree());
  assert.equal(t.features.length, 20);
  assert.deepEqual(Array.from(t.parents.slice(0, 8)), [-1, 0, 0, 0, -1, 4, 4, 4]);
  assert.deepEqual(Array.from(t.parents.slice(12)), Array(8).fill(-1));
  assert.deepEqual(Array.from(t.levels.slice(0, 4)), [0, 1, 1, 1]);
  assert.equal(t.features[1].path, "root.children[0].children[0]");
  assert.ok(Math.abs(t.nominalRates[1] - 0.15 * 0.2) < 1e-12);
  assert.ok(Math.abs(t.nominalRates[19] - 0.05) < 1e-12);
  // Defaults of the toy schema: read-out and binary unless said otherwise.
  assert.equal(t.features[0].isBinary, true);
  assert.equal(t.nodes.length, 24);
});

Deno.test("treeToJson round-trips through parseTree", () => {
  const t = parseTree(toyTree());
  const again = parseTree(JSON.parse(JSON.stringify(treeToJson(t.root))));
  assert.deepEqual(Array.from(again.parents), Array.from(t.parents));
  assert.deepEqual(Array.from(again.nominalRates), Array.from(t.nominalRates));
});

Deno.test("parseTree rejects a probability outside [0, 1], naming the node", () => {
  const bad = toyTree();
  bad.children![2].children![1].active_prob = 1.5;
  throwsNaming(
    () => parseTree(bad, "my.json"),
    "my.json",
    "root.children[2].children[1]",
    "1.5",
    "[0, 1]",
  );
  const neg = toyTree();
  neg.children![5].active_prob = -0.1;
  throwsNaming(() => parseTree(neg), "root.children[5]", "-0.1");
});

Deno.test("parseTree rejects mutually exclusive children summing above 1, naming the parent", () => {
  const bad = toyTree();
  bad.children![1].children![3].active_prob = 0.5; // 0.2·3 + 0.5 = 1.1
  throwsNaming(() => parseTree(bad), "root.children[1]:", "1.1 > 1", "mutually exclusive");
  // Exactly 1 (0.2·3 + 0.4, with float rounding) is fine.
  parseTree(toyTree());
});

Deno.test("parseTree rejects cycles and shared nodes in hand-built objects, naming both places", () => {
  const a: Record<string, unknown> = { active_prob: 0.5, children: [] };
  const b: Record<string, unknown> = { active_prob: 0.5, children: [a] };
  (a.children as unknown[]).push(b);
  throwsNaming(
    () => parseTree({ active_prob: 1, is_read_out: false, children: [a] }),
    "cycle",
    "root.children[0].children[0].children[0]",
    "ancestor root.children[0]",
  );
  const shared = { active_prob: 0.3 };
  throwsNaming(
    () => parseTree({ active_prob: 1, children: [shared, shared] }),
    "root.children[1]",
    "also appears at root.children[0]",
  );
});

Deno.test("parseTree rejects missing fields, unknown keys, wrong types and duplicate ids", () => {
  throwsNaming(
    () => parseTree({ active_prob: 1, children: [{ is_read_out: true }] }),
    "root.children[0]",
    'missing required field "active_prob"',
  );
  throwsNaming(
    () => parseTree({ active_prob: 1, children: [{ active_prob: 0.1, activeProb: 0.1 }] }),
    "root.children[0]",
    'unknown key "activeProb"',
  );
  throwsNaming(
    () => parseTree({ active_prob: 1, is_binary: "yes" }),
    "root",
    "is_binary must be true or false",
  );
  throwsNaming(
    () => parseTree({ active_prob: 1, children: {} }),
    "root",
    "children must be an array",
  );
  throwsNaming(() => parseTree([1, 2]), "root", "expected an object");
  throwsNaming(
    () => parseTree({ active_prob: 1, id: "x", children: [{ active_prob: 0.2, id: "x" }] }),
    "root.children[0]",
    'duplicate id "x"',
    "also used by root",
  );
  throwsNaming(() => parseTree({ active_prob: 1, is_read_out: false }), "no read-out node");
});

Deno.test("readTreeFile names the file for unreadable or invalid JSON", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "tree.json");
    await Deno.writeTextFile(file, "{ not json");
    await assert.rejects(
      () => readTreeFile(file),
      (e: Error) =>
        e instanceof DataError && e.message.includes(file) && e.message.includes("not valid JSON"),
    );
    await assert.rejects(
      () => readTreeFile(join(dir, "missing.json")),
      (e: Error) => e.message.includes("missing.json"),
    );
    await Deno.writeTextFile(file, JSON.stringify({ active_prob: 2 }));
    await assert.rejects(
      () => readTreeFile(file),
      (e: Error) => e.message.includes(file) && e.message.includes("node root"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("treeFromParams spreads probabilities Zipf-like and checks they stay <= 1", () => {
  const json = treeFromParams({
    branching: [4, 3],
    topMass: 1.2,
    childMass: 0.9,
    zipf: 1,
    exclusive: true,
    binary: false,
  });
  const t = parseTree(json);
  assert.equal(t.features.length, 4 + 12);
  const top = json.children!.map((c) => c.active_prob);
  const h = 1 + 1 / 2 + 1 / 3 + 1 / 4;
  top.forEach((p, i) => assert.ok(Math.abs(p - 1.2 / (i + 1) / h) < 1e-12));
  const kids = json.children![0].children!.map((c) => c.active_prob);
  assert.ok(Math.abs(kids.reduce((a, b) => a + b) - 0.9) < 1e-12);
  assert.ok(kids[0] > kids[1] && kids[1] > kids[2]);
  assert.equal(t.features[0].exclusiveChildren, true);
  assert.equal(t.features[0].isBinary, false);
  throwsNaming(
    () =>
      treeFromParams({
        branching: [2],
        topMass: 3,
        childMass: 0.5,
        zipf: 0,
        exclusive: false,
        binary: true,
      }),
    "top-mass 3",
    "1.5",
  );
  throwsNaming(
    () =>
      treeFromParams({
        branching: [2, 2],
        topMass: 1,
        childMass: 1.5,
        zipf: 0,
        exclusive: true,
        binary: true,
      }),
    "child-mass 1.5",
    "exclusive",
  );
});
