/**
 * GPU timing: timeGpu reports the time of the work it records, on whatever adapter the tests run on
 * (software adapters: the wall clock, since their timestamps once read 0 ms for a 0.3 s decode in a
 * bench); PhaseTimer names phases in order and sums them per label, both ways of timing, and wall
 * timing puts a phase's work in that phase (lavapipe's timestamps did not: bench/README.md,
 * eighth session), less an empty submit's round trip; dispatch marks take their phase's name.
 */
import assert from "node:assert/strict";
import { testGpu } from "../_util.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import { createStorage, uniforms } from "../../lib/gpu/buffer.ts";
import { type Dispatch, encodeDispatches, getPipeline } from "../../lib/gpu/kernel.ts";
import {
  defaultPhaseTiming,
  dispatchMark,
  PhaseTimer,
  type PhaseTiming,
} from "../../lib/gpu/phase_timer.ts";
import { timeGpu } from "../../lib/gpu/timer.ts";
import { releaseUniforms } from "../../lib/sae/ops/grid.ts";

/** 4 dispatches of unpack_f16 over 8M values: ~80 ms on a software adapter. */
async function unpackWork(gpu: Gpu) {
  const words = 1 << 22, WG = 256;
  const src = createStorage(gpu, words * 4, "src");
  const dst = createStorage(gpu, words * 8, "dst");
  const work: Dispatch[] = Array.from({ length: 4 }, () => ({
    kernel: { file: "unpack_f16.wgsl", entry: "main", constants: { WG } },
    buffers: [src, dst, uniforms(gpu, { n: 2 * words, row_words: WG * 65535 })],
    workgroups: [words / WG],
  }));
  const pipelines = await Promise.all(work.map((x) => getPipeline(gpu, x.kernel)));
  return {
    record: (enc: GPUCommandEncoder) => encodeDispatches(gpu, enc, work, pipelines),
    release: () => {
      releaseUniforms(work);
      src.destroy();
      dst.destroy();
    },
  };
}

Deno.test("timeGpu times the recorded dispatches: real work takes longer than an empty submit", async () => {
  const gpu = await testGpu();
  const { record, release } = await unpackWork(gpu);
  try {
    await timeGpu(gpu, record); // compile and warm up
    const empty = Math.min(await timeGpu(gpu, () => {}), await timeGpu(gpu, () => {}));
    const busy = Math.min(await timeGpu(gpu, record), await timeGpu(gpu, record));
    assert.ok(busy > 0 && busy > empty, `unpack ${busy} ms, empty submit ${empty} ms`);
  } finally {
    release();
  }
});

Deno.test("PhaseTimer: phases in order, summed per label; wall timing puts the work in its phase", async () => {
  const gpu = await testGpu();
  if (gpu.isFallback) assert.equal(defaultPhaseTiming(gpu), "wall");
  const { record, release } = await unpackWork(gpu);
  const timings: PhaseTiming[] = gpu.hasTimestamps ? ["wall", "timestamps"] : ["wall"];
  try {
    const alone = Math.min(await timeGpu(gpu, record), await timeGpu(gpu, record));
    // One submit-and-wait round trip of the host, which every wall phase includes.
    let roundTrip = Infinity;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      gpu.device.queue.submit([gpu.device.createCommandEncoder().finish()]);
      await gpu.device.queue.onSubmittedWorkDone();
      roundTrip = Math.min(roundTrip, performance.now() - t0);
    }
    for (const timing of timings) {
      const timer = new PhaseTimer(gpu, timing);
      assert.equal(timer.timing, timing);
      let enc = timer.begin(gpu.device.createCommandEncoder());
      record(enc);
      enc = timer.mark(enc, "busy");
      enc = timer.mark(enc, "empty");
      record(enc);
      enc = timer.mark(enc, "busy");
      await timer.submit(enc.finish());
      await gpu.device.queue.onSubmittedWorkDone();
      const phases = await timer.read();
      assert.deepEqual([...phases.keys()], ["busy", "empty"], timing);
      const busy = phases.get("busy")!, empty = phases.get("empty")!;
      assert.ok(empty >= 0 && busy > 0, `${timing}: busy ${busy} ms, empty ${empty} ms`);
      // Where the wall timing is the default (software adapters), and wherever the work outlasts
      // the host's round trip (on the H100 it took 0.12 ms against an 11 ms round trip).
      if (timing === "wall" && (gpu.isFallback || alone > 5 * roundTrip)) {
        // Two runs of the work, each taking `alone` ms, and nothing in between.
        assert.ok(busy >= 1.5 * alone, `wall: busy ${busy} ms, one run alone ${alone} ms`);
        assert.ok(empty < 0.5 * alone, `wall: empty ${empty} ms, one run alone ${alone} ms`);
      }
      timer.destroy();
    }
  } finally {
    release();
  }
});

Deno.test("PhaseTimer: dispatch marks are named after the phase that follows; wall timing keeps CPU time per phase", async () => {
  const gpu = await testGpu();
  const { record, release } = await unpackWork(gpu);
  try {
    await timeGpu(gpu, record); // compile
    const timings: PhaseTiming[] = gpu.hasTimestamps ? ["wall", "timestamps"] : ["wall"];
    for (const timing of timings) {
      const timer = new PhaseTimer(gpu, timing);
      let enc = timer.begin(gpu.device.createCommandEncoder());
      record(enc);
      enc = timer.mark(enc, dispatchMark("unpack"));
      enc = timer.mark(enc, "first");
      record(enc);
      enc = timer.mark(enc, dispatchMark("unpack"));
      record(enc);
      enc = timer.mark(enc, dispatchMark("again"));
      enc = timer.mark(enc, "second");
      enc = timer.mark(enc, dispatchMark("tail"));
      await timer.submit(enc.finish());
      await gpu.device.queue.onSubmittedWorkDone();
      const phases = await timer.read();
      assert.deepEqual([...phases.keys()], [
        "first: unpack",
        "first",
        "second: unpack",
        "second: again",
        "second",
        "tail",
      ]);
      const cpu = timer.readCpu();
      if (timing === "timestamps") assert.equal(cpu.size, 0);
      else {
        assert.deepEqual([...cpu.keys()], [...phases.keys()]);
        for (const [label, ms] of cpu) assert.ok(Number.isFinite(ms) && ms >= 0, `${label}: ${ms}`);
        // On a software adapter the process's threads do the work: the busy phases cost CPU time.
        if (gpu.isFallback) {
          const busy = cpu.get("first: unpack")! + cpu.get("second: unpack")!;
          assert.ok(busy > 0.5 * (phases.get("first: unpack")! + phases.get("second: unpack")!));
        }
      }
      timer.destroy();
    }
  } finally {
    release();
  }
});
