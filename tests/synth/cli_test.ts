import assert from "node:assert/strict";
import { runCli as cli } from "../_util.ts";
import { join } from "node:path";
import { parseCommand, UsageError } from "../../cli/args.ts";
import { spec, synthSettingsFromFlags } from "../../cli/synth.ts";
import { DataError } from "../../lib/errors.ts";
import { DEFAULT_SYNTH_PARAMS, defaultTree } from "../../lib/synth/default.ts";
import { readTruth } from "../../lib/synth/truth.ts";
import { toyTree } from "./_toy_tree.ts";

Deno.test("synth flags: no tree flags give the default dataset's tree and parameters", async () => {
  const s = await synthSettingsFromFlags(parseCommand(spec, ["--out", "x"]));
  assert.deepEqual(Array.from(s.tree.parents), Array.from(defaultTree().parents));
  assert.deepEqual(s.params, DEFAULT_SYNTH_PARAMS);
});

Deno.test("synth flags: --branching with --depth repeats one value; mismatches and clashes are usage errors", async () => {
  const s = await synthSettingsFromFlags(
    parseCommand(spec, [
      "--branching",
      "3",
      "--depth",
      "3",
      "--no-exclusive",
      "--child-mass",
      "1.2",
    ]),
  );
  assert.equal(s.tree.features.length, 3 + 9 + 27);
  assert.equal(s.tree.features[0].exclusiveChildren, false);
  await assert.rejects(
    () => synthSettingsFromFlags(parseCommand(spec, ["--branching", "3,2", "--depth", "3"])),
    (e: Error) =>
      e instanceof UsageError && e.message.includes("--branching has 2 levels but --depth is 3"),
  );
  await assert.rejects(
    () => synthSettingsFromFlags(parseCommand(spec, ["--tree", "t.json", "--zipf", "1"])),
    (e: Error) => e instanceof UsageError && e.message.includes("drop --zipf"),
  );
  await assert.rejects(
    () => synthSettingsFromFlags(parseCommand(spec, ["--branching", "2,2", "--child-mass", "1.5"])),
    (e: Error) => e instanceof DataError && e.message.includes("child-mass 1.5"),
  );
});

Deno.test("arbor synth writes a dataset from a tree file, prints a summary, and rejects a bad tree naming the node", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const treeFile = join(dir, "tree.json");
    await Deno.writeTextFile(treeFile, JSON.stringify(toyTree()));
    const out = join(dir, "ds");
    const r = await cli(
      "synth",
      "--out",
      out,
      "--tree",
      treeFile,
      "--d-in",
      "16",
      "--tokens",
      "3000",
      "--seed",
      "4",
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /wrote 3000 tokens × d_in 16/);
    assert.match(r.stdout, /20 true features \(11 \+ 9 per level\)/);
    const truth = await readTruth(out);
    assert.equal(truth?.features, 20);
    assert.equal(truth?.json.seed, 4);
    const bad = toyTree();
    bad.children![1].children![0].active_prob = 7;
    await Deno.writeTextFile(treeFile, JSON.stringify(bad));
    const e = await cli("synth", "--out", join(dir, "bad"), "--tree", treeFile);
    assert.equal(e.code, 1);
    assert.match(
      e.stderr,
      /tree\.json: node root\.children\[1\]\.children\[0\]: active_prob 7 is outside \[0, 1\]/,
    );
    const u = await cli("synth", "--tokens", "10");
    assert.equal(u.code, 2);
    assert.match(u.stderr, /--out is required/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
