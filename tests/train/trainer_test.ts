/** Tests of the training loop (lib/train/trainer.ts) with the reference engine. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { randn } from "../_util.ts";
import { makeConfig, type SaeConfig } from "../../lib/sae/config.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { GpuEngine } from "../../lib/sae/gpu_engine.ts";
import { arraySource, firstNonFinite, storeSource } from "../../lib/train/batch_source.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { ActivationReader, batchF32 } from "../../lib/store/reader.ts";
import { treeTrainerHook } from "../../lib/tree/trainer_hook.ts";
import { loadCheckpoint } from "../../lib/train/checkpoint.ts";
import {
  checkFinite,
  DEFAULT_STEPS_AHEAD,
  formatDuration,
  type ProgressSink,
  train,
  type TrainerHook,
  type TrainOptions,
} from "../../lib/train/trainer.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "arbor_train_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const D = 6;
const B = 8;
/** 40 rows: 5 batches per epoch, so 8 steps cross an epoch boundary. */
const DATA = randn(40 * D, 99).map((v, i) => v + 0.5 * (i % 3));

/** A hook that counts steps and keeps its count in checkpoints (like the tree capacity). */
class CountingHook implements TrainerHook {
  readonly name = "counter";
  count = 0;
  afterStep() {
    this.count++;
  }
  saveState() {
    return { json: { count: this.count }, tensors: { seen: Float32Array.from([this.count]) } };
  }
  loadState(json: unknown, tensors: Record<string, Float32Array | Int32Array | Uint32Array>) {
    this.count = (json as { count: number }).count;
    assert.equal(tensors.seen[0], this.count);
  }
}

function options(
  config: SaeConfig,
  outDir: string,
  maxTokens: number,
  extra: Partial<TrainOptions> = {},
): TrainOptions {
  return {
    engine: new ReferenceEngine(config),
    source: arraySource(DATA, D, B),
    outDir,
    batchSize: B,
    maxTokens,
    logEvery: 2,
    checkpointEvery: 3,
    progressSink: null,
    ...extra,
  };
}

for (
  const config of [
    makeConfig({
      arch: "tree",
      dIn: D,
      layers: [4, 6, 8],
      kPerLayer: [2, 1, 1],
      deadTokens: 16,
      auxAlpha: [0.1, 0.1, 0.1],
      seed: 2,
    }),
    makeConfig({ arch: "batchtopk", dIn: D, layers: [12], k: 2, deadTokens: 16, seed: 3 }),
  ]
) {
  Deno.test(`${config.arch}: 8 straight steps equal 4 steps + resume + 4 steps, bit for bit`, async () => {
    await withDir(async (dir) => {
      const straight = join(dir, "straight");
      const hookA = new CountingHook();
      const a = await train(options(config, straight, 8 * B, { hooks: [hookA] }));
      assert.equal(a.steps, 8);
      assert.equal(hookA.count, 8);

      const split = join(dir, "split");
      const first = await train(options(config, split, 4 * B, { hooks: [new CountingHook()] }));
      assert.equal(first.steps, 4);
      const ck = await loadCheckpoint(split);
      const hookB = new CountingHook();
      const b = await train({
        ...options(config, split, 8 * B, { hooks: [hookB] }),
        engine: new ReferenceEngine(ck.config, ck.state),
        source: arraySource(DATA, D, B, { cursor: ck.progress.cursor }),
        progress: ck.progress,
      });
      assert.equal(b.steps, 8);
      assert.equal(hookB.count, 8, "hook state restored on resume");
      const sa = await loadCheckpoint(straight);
      const sb = await loadCheckpoint(split);
      assert.deepEqual(sb.state, sa.state);
      assert.deepEqual(sb.progress, sa.progress);
      assert.deepEqual(b.last, a.last);
      if (config.arch === "tree") assert.ok(a.last!.auxLoss.some((v) => v > 0), "AuxK was active");
      else assert.ok(sa.state.threshold > 0);
      // metrics: logEvery 2 → steps 2, 4, 6, 8 in the straight run; the split run appends
      const lines = (await Deno.readTextFile(join(straight, "metrics.jsonl"))).trim().split("\n")
        .map((l) => JSON.parse(l));
      assert.deepEqual(lines.map((l) => l.step), [2, 4, 6, 8]);
      for (
        const key of [
          "loss",
          "fvu",
          "l0",
          "l0_per_layer",
          "dead_fraction",
          "tokens_per_s",
          "aux_loss",
          "main_loss",
        ]
      ) {
        assert.ok(key in lines[0], `metrics line has ${key}`);
      }
      const splitLines = (await Deno.readTextFile(join(split, "metrics.jsonl"))).trim().split("\n");
      assert.deepEqual(splitLines.map((l) => JSON.parse(l).step), [2, 4, 6, 8]);
    });
  });
}

const TOPK = makeConfig({ arch: "topk", dIn: D, layers: [10], k: 2, seed: 1 });

Deno.test("abort (SIGINT) stops after the current step with a checkpoint", async () => {
  await withDir(async (dir) => {
    const ctl = new AbortController();
    const stopper: TrainerHook = {
      name: "stopper",
      afterStep: (s) => {
        if (s.step === 3) ctl.abort();
      },
    };
    const r = await train(
      options(TOPK, dir, 100 * B, { hooks: [stopper], signal: ctl.signal, checkpointEvery: 0 }),
    );
    assert.equal(r.interrupted, true);
    assert.equal(r.steps, 3);
    const ck = await loadCheckpoint(dir);
    assert.equal(ck.state.step, 3);
    assert.equal(ck.progress.tokensSeen, 3 * B);
  });
});

Deno.test("metrics: tokens_per_s is the rate since the previous line, so a slow first step weighs on the first line only", async () => {
  await withDir(async (dir) => {
    const ref = new ReferenceEngine(TOPK);
    let calls = 0;
    // The first step stands for the GPU's kernel compiles: 400 ms, the others a few ms.
    const engine = {
      config: ref.config,
      description: ref.description,
      step: async (x: Float32Array, rows: number) => {
        if (calls++ === 0) await new Promise((r) => setTimeout(r, 400));
        return await ref.step(x, rows);
      },
      encode: (x: Float32Array, rows: number) => ref.encode(x, rows),
      reconstruct: (x: Float32Array, rows: number) => ref.reconstruct(x, rows),
      readState: () => ref.readState(),
      writeState: (st: Parameters<ReferenceEngine["writeState"]>[0]) => ref.writeState(st),
      destroy: () => ref.destroy(),
    };
    await train({ ...options(TOPK, dir, 6 * B), engine, checkpointEvery: 0 });
    const lines = (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.step), [2, 4, 6]);
    const [first, second] = lines.map((l) => l.tokens_per_s);
    assert.ok(first < (2 * B) / 0.4, `first line ${first}: the 400 ms step in it`);
    // Since the start, the second line would be at most twice the first.
    assert.ok(second > 4 * first, `second line ${second} against the first ${first}`);
  });
});

Deno.test("NaN in the data: clear error naming the source and token, no checkpoint written", async () => {
  await withDir(async (dir) => {
    const bad = DATA.slice();
    bad[2 * B * D + 3 * D + 1] = NaN; // third batch, row 3, column 1
    await assert.rejects(
      () =>
        train({ ...options(TOPK, dir, 5 * B), source: arraySource(bad, D, B, { name: "acts/" }) }),
      /acts\/: non-finite value NaN in the training data \(token 19 of the run, column 1\)/,
    );
    assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".safetensors")));
  });
});

Deno.test("checkFinite reads exponent bits: NaN and ±Inf found in f32 and f16 batches, finite extremes pass", () => {
  const rows = 2, d = 3;
  const finite32 = [3.4e38, -3.4e38, 1e-45, -0, 0, 1];
  const finite16 = [65504, -65504, 6e-8, -0, 0, 1];
  for (
    const [name, make, finite] of [
      ["f32", (v: number[]) => new Float32Array(v), finite32],
      ["f16", (v: number[]) => new Float16Array(v), finite16],
    ] as const
  ) {
    checkFinite({ x: make(finite), rows, cursor: null }, "data/", 0);
    for (const [bad, at] of [[NaN, 4], [Infinity, 0], [-Infinity, 5]]) {
      const v = [...finite];
      v[at] = bad;
      assert.throws(
        () => checkFinite({ x: make(v), rows, cursor: null }, "data/", 10),
        new RegExp(
          `data/: non-finite value ${bad} in the training data \\(token ${
            10 + Math.floor(at / d)
          } ` +
            `of the run, column ${at % d}\\)`,
        ),
        `${name}: ${bad} at ${at}`,
      );
    }
  }
});

Deno.test("checkFinite on f16: an odd count's last value and a view at an odd offset are read too", () => {
  const odd = new Float16Array([1, 2, 3, 4, 5, 6, NaN]);
  assert.throws(() => checkFinite({ x: odd, rows: 1, cursor: null }, "d/", 0), /column 6\)/);
  const shifted = new Float16Array(new Float16Array([0, 1, 2, Infinity, 4]).buffer, 2, 4);
  assert.throws(
    () => checkFinite({ x: shifted, rows: 2, cursor: null }, "d/", 0),
    /token 1 .*column 0\)/,
  );
  checkFinite(
    { x: new Float16Array(new Float16Array([NaN, 1, 2]).buffer, 2, 2), rows: 1, cursor: null },
    "d/",
    0,
  );
});

Deno.test("firstNonFinite equals a value-by-value scan on random bit patterns (f16, f32; block edges, odd offsets)", () => {
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
  const plain = (x: Float16Array | Float32Array) => x.findIndex((v) => !Number.isFinite(v));
  for (let trial = 0; trial < 60; trial++) {
    const f16 = trial % 2 === 0;
    const len = [1, 7, 2048, 2049, 4101, 6000][trial % 6];
    const bits = f16 ? new Uint16Array(len + 1) : new Uint32Array(len);
    for (let i = 0; i < bits.length; i++) bits[i] = next() & (f16 ? 0xffff : 0xffffffff);
    // Mostly finite (an exponent of all ones is rare in random bits; clear most of them), with
    // a non-finite value at a random place in two trials of three.
    for (let i = 0; i < bits.length; i++) {
      if (f16 && (bits[i] & 0x7c00) === 0x7c00) bits[i] &= 0xfbff;
      if (!f16 && (bits[i] & 0x7f800000) === 0x7f800000) bits[i] &= 0xff7fffff;
    }
    if (trial % 3 !== 0) {
      const at = next() % bits.length;
      bits[at] |= f16 ? 0x7c00 : 0x7f800000;
    }
    // f16 views at byte offset 0 and 2 (the unaligned one takes the value-by-value scan).
    const views = f16
      ? [new Float16Array(bits.buffer, 0, len), new Float16Array(bits.buffer, 2, len)]
      : [new Float32Array(bits.buffer)];
    for (const x of views) {
      assert.equal(firstNonFinite(x), plain(x), `trial ${trial} len ${len} offset ${x.byteOffset}`);
    }
  }
});

Deno.test("storeSource hands f16 stores' batches over as f16, the values the reader reads", async () => {
  await withDir(async (dir) => {
    const w = await ActivationWriter.create(dir, { dIn: D, dtype: "f16", provenance: {} });
    await w.append(DATA);
    await w.close();
    const src = await storeSource(dir, { batchSize: B, seed: 3 });
    const reader = await ActivationReader.open(dir);
    const stream = reader.batches({ batchSize: B, order: "shuffle", seed: 3, epochs: Infinity });
    try {
      for (let i = 0; i < 3; i++) {
        const got = (await src.next())!;
        const want = (await stream.nextBatch())!;
        assert.ok(got.x instanceof Float16Array, "f16 as stored");
        assert.deepEqual(new Float32Array(got.x), batchF32(want), `batch ${i}`);
      }
    } finally {
      await src.close();
      await stream.close();
    }
  });
});

Deno.test("data of another d_in and an unwritable --out give clear errors", async () => {
  await withDir(async (dir) => {
    await assert.rejects(
      () =>
        train({
          ...options(TOPK, dir, 2 * B),
          source: arraySource(randn(16 * 7, 1), 7, B, { name: "other/" }),
        }),
      /other\/: rows have d_in = 7 but the SAE has d_in = 6/,
    );
    const file = join(dir, "a_file");
    await Deno.writeTextFile(file, "x");
    await assert.rejects(
      () => train(options(TOPK, join(file, "out"), 2 * B)),
      /--out .*a_file\/out: cannot write there/,
    );
  });
});

Deno.test("progress: a TTY gets \\r-updated lines, a pipe gets plain lines", async () => {
  for (const isTerminal of [true, false]) {
    await withDir(async (dir) => {
      let text = "";
      const sink: ProgressSink = { isTerminal, write: (t) => void (text += t) };
      await train(options(TOPK, dir, 4 * B, { progressSink: sink }));
      assert.match(
        text,
        /step 4 {2}tokens 32\/32 {2}loss [\d.]+ {2}fvu [\d.]+ {2}l0 [\d.]+ {2}dead 0\.0% {2}\S+ tok\/s {2}ETA /,
      );
      if (isTerminal) assert.equal(text.split("\r").length - 1, 2);
      else assert.equal(text.split("\n").filter(Boolean).length, 2);
    });
  }
  assert.equal(formatDuration(3725), "1h02m");
  assert.equal(formatDuration(312), "5m12s");
});

Deno.test("GPU engine: 8 straight steps equal 4 steps + resume + 4 steps, bit for bit (tree, AuxK on)", async () => {
  const config = makeConfig({
    arch: "tree",
    dIn: D,
    layers: [4, 6, 8],
    kPerLayer: [2, 1, 1],
    deadTokens: 16,
    auxAlpha: [0.1, 0.1, 0.1],
    seed: 2,
  });
  await withDir(async (dir) => {
    const run = async (
      out: string,
      maxTokens: number,
      ck?: Awaited<ReturnType<typeof loadCheckpoint>>,
    ) => {
      const engine = await GpuEngine.create(config, ck?.state);
      try {
        return await train({
          ...options(config, out, maxTokens),
          engine,
          source: arraySource(DATA, D, B, { cursor: ck?.progress.cursor }),
          ...(ck ? { progress: ck.progress } : {}),
        });
      } finally {
        engine.destroy();
      }
    };
    const straight = join(dir, "straight"), split = join(dir, "split");
    await run(straight, 8 * B);
    await run(split, 4 * B);
    const r = await run(split, 8 * B, await loadCheckpoint(split));
    assert.equal(r.steps, 8);
    const a = await loadCheckpoint(straight), b = await loadCheckpoint(split);
    assert.deepEqual(b.state, a.state);
    assert.ok(r.last!.auxLoss.some((v) => v > 0), "AuxK was active");
  });
});

/** The GPU engine seen through a counter of steps submitted but not yet finished. */
/**
 * The engine, counting steps submitted and not yet handled. `ready` overrides what the tickets
 * report: "never" makes the trainer wait only at its cap, "always" handle each step at once.
 */
function countingEngine(
  engine: GpuEngine,
  pipelined: boolean,
  ready: "engine" | "never" | "always" = "engine",
) {
  let open = 0;
  /** readsInFlight: state reads and writes while a step was in flight (must stay 0). */
  const seen = { maxOpen: 0, readsInFlight: 0 };
  const wrapped = {
    config: engine.config,
    description: engine.description,
    step: (x: Float32Array, rows: number) => engine.step(x, rows),
    encode: (x: Float32Array, rows: number) => engine.encode(x, rows),
    reconstruct: (x: Float32Array, rows: number) => engine.reconstruct(x, rows),
    readState: () => {
      // A checkpoint must see the engine as its step left it, with no later step submitted.
      if (open > 0) seen.readsInFlight++;
      return engine.readState();
    },
    writeState: (s: Parameters<GpuEngine["writeState"]>[0]) => {
      if (open > 0) seen.readsInFlight++;
      return engine.writeState(s);
    },
    destroy: () => engine.destroy(),
    ...(pipelined
      ? {
        enqueueStep: async (x: Float32Array, rows: number) => {
          const ticket = await engine.enqueueStep(x, rows);
          seen.maxOpen = Math.max(seen.maxOpen, ++open);
          // Open until the trainer asks for the statistics (it handles the step then).
          let asked = false;
          return {
            stats: () => {
              if (!asked) open--;
              asked = true;
              return ticket.stats();
            },
            get ready() {
              return ready === "engine" ? ticket.ready : ready === "always";
            },
          };
        },
      }
      : {}),
  };
  return { wrapped, seen };
}

Deno.test("GPU engine: the trainer submits the next step before the last one's statistics are in; same weights", async () => {
  const config = makeConfig({ arch: "topk", dIn: D, layers: [12], k: 2, deadTokens: 16, seed: 5 });
  await withDir(async (dir) => {
    const run = async (
      out: string,
      pipelined: boolean,
      extra: Partial<TrainOptions> = {},
      ready: "engine" | "never" | "always" = "engine",
    ) => {
      const engine = await GpuEngine.create(config);
      const { wrapped, seen } = countingEngine(engine, pipelined, ready);
      try {
        const r = await train({ ...options(config, out, 9 * B), engine: wrapped, ...extra });
        return { r, seen, state: (await loadCheckpoint(out)).state };
      } finally {
        engine.destroy();
      }
    };
    const plain = await run(join(dir, "plain"), false);
    const piped = await run(join(dir, "piped"), true);
    assert.equal(piped.r.steps, 9);
    assert.deepEqual(piped.state, plain.state);
    assert.deepEqual(piped.r.last, plain.r.last);
    assert.equal(piped.seen.maxOpen, 3, "up to the checkpoint every 3 steps");
    // Without checkpoints, and with statistics that never come in early, the cap is what stops it.
    for (const stepsAhead of [0, 1, 2, undefined]) {
      const extra = { checkpointEvery: 0, ...(stepsAhead === undefined ? {} : { stepsAhead }) };
      const r = await run(join(dir, `ahead${stepsAhead}`), true, extra, "never");
      const want = (stepsAhead ?? DEFAULT_STEPS_AHEAD) + 1;
      assert.equal(r.seen.maxOpen, want, `stepsAhead ${stepsAhead ?? "default"}`);
      assert.deepEqual(r.state, plain.state, `stepsAhead ${stepsAhead ?? "default"}`);
    }
    // Statistics that are in are handled before the next step is submitted.
    const eager = await run(join(dir, "eager"), true, { checkpointEvery: 0 }, "always");
    assert.equal(eager.seen.maxOpen, 1, "each step handled as soon as its statistics are in");
    assert.deepEqual(eager.state, plain.state);
    assert.equal(
      piped.seen.readsInFlight,
      0,
      "checkpoints (every 3 steps) wait for no step in flight",
    );
    // Hooks must see the engine as each step left it: no overlap then.
    const hooked = await run(join(dir, "hooked"), true, { hooks: [new CountingHook()] });
    assert.equal(hooked.seen.maxOpen, 1);
    assert.deepEqual(hooked.state, plain.state);
    // Logging needs only the statistics.
    const metrics = await Deno.readTextFile(join(dir, "piped", "metrics.jsonl"));
    assert.equal(metrics.trim().split("\n").length, 5, "log lines at steps 2, 4, 6, 8 and 9");
  });
});

Deno.test("GPU engine: with the tree hook, steps overlap except around scheduled events; same weights", async () => {
  const config = makeConfig({
    arch: "tree",
    dIn: D,
    layers: [3, 9],
    kPerLayer: [1, 2],
    deadTokens: 16,
    auxAlpha: [0.1, 0.1],
    seed: 7,
  });
  const steps = 10;
  // Reallocations at steps 3, 5 and 7, the root reset at 8: the hook reads and writes the engine.
  const schedule = { firstStep: 3, growth: 1, maxInterval: 2, rootResetStep: 8 };
  await withDir(async (dir) => {
    const run = async (out: string, pipelined: boolean) => {
      const engine = await GpuEngine.create(config);
      const { wrapped, seen } = countingEngine(engine, pipelined);
      const hook = treeTrainerHook(config, { totalSteps: steps, schedule, log: null })!;
      try {
        await train({
          ...options(config, out, steps * B),
          engine: wrapped,
          hooks: [hook],
          checkpointEvery: 0,
        });
        const events = (await Deno.readTextFile(join(out, "metrics.jsonl")))
          .split("\n").filter((l) => l.includes('"event"')).map((l) => JSON.parse(l));
        return { seen, events, state: (await loadCheckpoint(out)).state };
      } finally {
        engine.destroy();
      }
    };
    const plain = await run(join(dir, "plain"), false);
    const piped = await run(join(dir, "piped"), true);
    assert.deepEqual(piped.state, plain.state);
    assert.deepEqual(piped.events, plain.events);
    assert.deepEqual(
      plain.events.filter((e) => e.event !== "reallocation-followup").map((e) => e.step),
      [3, 5, 7, 8],
      "the scheduled events ran",
    );
    assert.equal(piped.seen.maxOpen, 3, "steps overlap between events");
    assert.equal(
      piped.seen.readsInFlight,
      0,
      "the hook never used the engine with a step in flight",
    );
  });
});
