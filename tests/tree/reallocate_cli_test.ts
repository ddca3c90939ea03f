import assert from "node:assert/strict";
import { parseCommand, UsageError } from "../../cli/args.ts";
import {
  ALLOCATION_FLAGS,
  allocationOptionsFromFlags,
  parseReallocateArgs,
  runReallocate,
  spec,
} from "../../cli/reallocate.ts";
import { reallocationSteps } from "../../lib/tree/schedule.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { initState } from "../../lib/sae/engine.ts";
import { type Checkpoint, loadCheckpoint, saveCheckpoint } from "../../lib/train/checkpoint.ts";
import { reallocate, resetDeadToRoot } from "../../lib/tree/reallocation.ts";
import { makeTree } from "../../lib/tree/structure.ts";
import { TREE_HOOK_NAME, TreeAllocator } from "../../lib/tree/trainer_hook.ts";
import { rng } from "../_util.ts";

const DEAD = 1000;

/** A small tree checkpoint with planted dead features and accumulated capacities. */
async function makeCheckpoint(dir: string): Promise<Checkpoint> {
  const config = makeConfig({
    arch: "tree",
    dIn: 4,
    layers: [3, 6, 12],
    kPerLayer: [1, 1, 1],
    deadTokens: DEAD,
    seed: 5,
  });
  const state = initState(config);
  const r = rng(2);
  state.step = 40;
  state.tokensSinceFired = Uint32Array.from({ length: 21 }, () => (r() < 0.5 ? 2 * DEAD : 0));
  state.tokensSinceFired[0] = 0; // parent 0 active, 1..2 may be silent
  const alloc = new TreeAllocator(config, { totalSteps: 100, log: null });
  for (let step = 1; step <= 10; step++) {
    const fire = Uint32Array.from(
      { length: 21 },
      (_, f) => (state.tokensSinceFired[f] === 0 ? 1 + (f % 3) : 0),
    );
    alloc.observe({
      step,
      loss: 1 + r(),
      mainLoss: [],
      auxLoss: [],
      fvu: 0,
      l0: 0,
      l0PerLayer: [],
      deadFraction: [0, 0, 0],
      fireCounts: fire,
    });
  }
  const ck: Checkpoint = {
    config,
    state,
    // Cast: the trainer's progress record is still gaining fields (maxTokens) as it lands.
    progress: {
      tokensSeen: 640,
      batchSize: 16,
      maxTokens: 1600,
      cursor: null,
      rngState: 1,
      hooks: { [TREE_HOOK_NAME]: alloc.toState() },
      hookTensors: {},
    } as Checkpoint["progress"],
  };
  await saveCheckpoint(dir, ck, { hook_name: "blocks.5.hook_resid_pre" });
  return ck;
}

function args(argv: string[]) {
  return parseReallocateArgs(parseCommand(spec, argv));
}

Deno.test("reallocate --out writes Algorithm 2's parents, resets capacities, leaves the input alone", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ck = await makeCheckpoint(`${dir}/in`);
    const before = await Deno.readFile(`${dir}/in/sae.safetensors`);
    const out: string[] = [];
    assert.equal(
      await runReallocate(
        args([`${dir}/in`, "--out", `${dir}/out`]),
        (s) => out.push(...s.split("\n")),
      ),
      0,
    );
    const tree = makeTree(ck.config.layers, ck.state.parents);
    const hook = ck.progress.hooks[TREE_HOOK_NAME] as { capacity: Record<string, number[]> };
    const cap = [[0], hook.capacity.capacity_1, hook.capacity.capacity_2];
    const want = reallocate(tree, {
      capacity: cap,
      tokensSinceFired: ck.state.tokensSinceFired,
      deadTokens: DEAD,
    });
    const res = await loadCheckpoint(`${dir}/out`);
    assert.deepEqual(res.state.parents, want.parents);
    assert.ok(want.layers.some((l) => l.moved > 0), "the fixture should move something");
    assert.deepEqual(res.state.encW, ck.state.encW);
    assert.equal(res.state.step, 40);
    const outHook = res.progress.hooks[TREE_HOOK_NAME] as { capacity: Record<string, number[]> };
    assert.ok(outHook.capacity.capacity_2.every((c) => c === 0));
    assert.deepEqual(await Deno.readFile(`${dir}/in/sae.safetensors`), before);
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/out/config.json`));
    assert.equal(cfg.hook_name, "blocks.5.hook_resid_pre");
    assert.match(out[0], /at step 40: reallocation \(Algorithms 1-2\)$/);
    assert.match(out[1], /^layer\s+children\s+dead\s+moved\s+eligible parents/);
    assert.match(
      out[2],
      new RegExp(`^1\\s+6\\s+${want.layers[0].dead}\\s+${want.layers[0].moved}\\s`),
    );
    assert.match(out.at(-1)!, /^wrote .*out$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reallocate --dry-run prints the moves and writes nothing; --to-root --in-place resets", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ck = await makeCheckpoint(`${dir}/in`);
    const out: string[] = [];
    await runReallocate(args([`${dir}/in`, "--dry-run", "--to-root"]), (s) => out.push(s));
    const text = out.join("\n");
    const want = resetDeadToRoot(
      makeTree(ck.config.layers, ck.state.parents),
      ck.state.tokensSinceFired,
      DEAD,
    );
    assert.match(text, /root reset — dry run/);
    assert.match(text, new RegExp(`layer 2: ${want.layers[1].moved} dead children would move`));
    assert.match(text, /feature \d+: parent \d+ → root/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["in"]);
    assert.deepEqual((await loadCheckpoint(`${dir}/in`)).state.parents, ck.state.parents);
    await runReallocate(args([`${dir}/in`, "--to-root", "--in-place"]), () => {});
    assert.deepEqual((await loadCheckpoint(`${dir}/in`)).state.parents, want.parents);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reallocate flag errors name the conflict", () => {
  const bad: [string[], RegExp][] = [
    [[], /give exactly one checkpoint folder, got 0/],
    [["a"], /say where the result goes: --out DIR/],
    [["a", "--dry-run", "--out", "b"], /--dry-run writes nothing/],
    [["a", "--out", "b", "--in-place"], /either --out or --in-place/],
    [["a", "--out", "./a/"], /is the input checkpoint; use --in-place/],
    [["a", "--dry-run", "--dead-tokens", "0"], /--dead-tokens must be ≥ 1/],
  ];
  for (const [argv, re] of bad) {
    assert.throws(
      () => args(argv),
      (e: Error) => e instanceof UsageError && re.test(e.message),
      argv.join(" "),
    );
  }
  const ok = args(["a", "--in-place", "--to-root", "--dead-tokens", "5"]);
  assert.deepEqual(ok, {
    dir: "a",
    out: "a",
    toRoot: true,
    dryRun: false,
    deadTokens: 5,
    eligibilityTokens: 50_000,
    pool: "surplus",
    showMoves: 20,
  });
});

Deno.test("train's allocation flags: scaled defaults, overrides, --no-realloc, and named errors", () => {
  const trainSpec = { name: "train", summary: "", usage: "", flags: ALLOCATION_FLAGS };
  const opts = (argv: string[], steps = 10_000) =>
    allocationOptionsFromFlags(parseCommand(trainSpec, argv).flags, steps, 4096);
  const d = opts([]);
  assert.deepEqual(reallocationSteps(d.totalSteps, d.schedule).reallocations, [
    300,
    900,
    1900,
    2900,
    3900,
    4900,
  ]);
  assert.equal(d.capacityRule, "split");
  assert.equal(d.eligibilityTokens, 50_000);
  const o = opts([
    "--realloc-first",
    "100",
    "--realloc-growth",
    "1",
    "--root-reset-step",
    "0",
    "--capacity-rule",
    "per-instance",
  ], 500);
  const s = reallocationSteps(500, o.schedule);
  assert.deepEqual([s.reallocations, s.rootResetStep], [[100, 200, 300, 400, 500], null]);
  assert.equal(o.capacityRule, "per-instance");
  assert.equal(o.batchTokens, 4096);
  const off = reallocationSteps(100, opts(["--no-realloc"], 100).schedule);
  assert.deepEqual([off.reallocations, off.rootResetStep], [[], null]);
  assert.throws(
    () => opts(["--realloc-growth", "0.5"]),
    /train: --realloc-growth: .*growth = 0.5 must be a number ≥ 1/,
  );
  assert.throws(
    () => opts(["--capacity-rule", "sum"]),
    /--capacity-rule must be split or per-instance, got "sum"/,
  );
  assert.throws(() => opts(["--realloc-first", "0"]), /--realloc-first: .*firstStep = 0/);
});
