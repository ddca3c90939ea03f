/**
 * Whole training step on the GPU engine: tokens/s of a TopK step with AuxK running, and the
 * achieved encoder-GEMM GFLOP/s alone on the same shape, naming the adapter.
 *
 *   deno run -A bench/train_step.ts [--n 24576,6144 | --preset NAME] [--batch 4096] [--steps 3] [--aux-k 256]
 *                                   [--dead-every 2] [--sparse-aux | --dense-aux] [--no-subgroups] [--f16]
 *                                   [--profile [--dispatches]]
 *                                   [--back-to-back [--ahead 4]]
 *
 * `--preset` times one of lib/tree/presets.ts (e.g. tree-4layer-l0-32, matryoshka-4layer-l0-32: the
 * Tree SAE and Matryoshka at the paper's shapes) instead of TopK at each `--n`; the GEMM figure is
 * then the encoder GEMM over its whole dictionary. `--help` prints this text.
 * Shape defaults to the issue's: d = 768, k = 32, B = 4096, auxK = 256, n = 24576 and 6144
 * (`--aux-k 0` times the step without AuxK; `--sparse-aux` keeps AuxK's gradient rows on the
 * sparse path, which software adapters otherwise leave for texture GEMMs when few are dead;
 * `--dense-aux` takes the dense path on GPUs too, with storage GEMMs;
 * `--no-subgroups` runs the texture GEMMs without subgroups, as on adapters that lack them;
 * `--f16` hands the steps f16 batches, as `train` does from an f16 store: uploaded as f16 and
 * widened on the GPU).
 * Half the features (every `--dead-every`-th one: 20 = 5 %, closer to a real run) are marked
 * dead (tokensSinceFired ≥ deadTokens) before every timed step, so the AuxK path does its full
 * work (256 aux slots per token while at least 256 are dead). The first step compiles the pipelines and sets b_dec
 * (host geometric median); it is not timed. The GEMM figure times the encoder GEMM over the
 * whole batch (same variant and row chunks as the engine, texture copies included) with GPU
 * timestamps when available, sustained (a short GEMM is repeated until ~1 s of GPU time, best pass):
 * FLOPs = 2·B·d·n. On a real GPU the re-upload of the whole state (~450 MB at n = 24576) leaves the
 * GPU idle long enough to drop to idle clocks (the next step ran ~5× slower on an H200), so there
 * two untimed inference passes follow each upload. `--back-to-back` writes the half-dead state
 * once and runs the timed steps as the trainer does, keeping `--ahead` steps (default: the
 * trainer's, `DEFAULT_STEPS_AHEAD`; 0 = one at a time) submitted ahead of the one whose statistics are awaited
 * (`enqueueStep`; earlier ones are handled as soon as their statistics are in, as the trainer
 * does); it reports the mean over the whole run. There the dead half's encoder rows are
 * scaled down so that it stays dead and AuxK does its full work in every step (the last step's
 * dead fraction is printed), and how much of each step the host spent in `enqueueStep` and awaiting
 * statistics. `--profile` also prints the GPU time of each phase of the step (mean over the timed
 * steps; with `--back-to-back`, over 5 steps profiled after the timed run, each submitted behind 19
 * others so that a real GPU runs it at working clocks): timestamp queries between phases on real
 * GPUs; on software adapters, whose timestamps lag their dispatches, each phase is submitted alone
 * and timed by the host (a few ms of round trip each), with the process's CPU time beside it (CPU
 * time / wall time = the cores the phase kept busy: lavapipe hands each of its threads a fixed,
 * contiguous share of a dispatch's workgroups, so uneven shares leave cores idle). `--dispatches`
 * times every dispatch apart, as "<phase>: <kernel entry>". Results go in bench/README.md under
 * "Training step".
 */
import { helpFromHeader } from "./_help.ts";
import { parseArgs } from "node:util";
import process from "node:process";
import { getGpu } from "../lib/gpu/device.ts";
import { createStorage, uploadStorage } from "../lib/gpu/buffer.ts";
import { type Dispatch, encodeDispatches, getPipeline } from "../lib/gpu/kernel.ts";
import { timeGpu } from "../lib/gpu/timer.ts";
import { defaultPhaseTiming } from "../lib/gpu/phase_timer.ts";
import { makeConfig } from "../lib/sae/config.ts";
import { type BatchValues, initState, type StepStats, type StepTicket } from "../lib/sae/engine.ts";
import { GpuEngine } from "../lib/sae/gpu_engine.ts";
import { DEFAULT_STEPS_AHEAD } from "../lib/train/trainer.ts";
import {
  createGemmTextures,
  encodeGemmTextureCopies,
  encoderGemmOp,
  maxGemmChunkRows,
  preferTextureGemm,
  textureGemmBlock,
  textureGemmKernel,
  textureGemmOp,
} from "../lib/sae/ops/encoder_gemm.ts";
import { releaseUniforms } from "../lib/sae/ops/grid.ts";
import { getPreset } from "../lib/tree/presets.ts";

await helpFromHeader(import.meta.url);

/** GPT-2 small residual width, the issue's benchmark shape. */
const D = 768;
/** Active features per token (issue benchmark). */
const K = 32;
/** `--back-to-back`: scale of the dead half's encoder rows (small, but AuxK values stay > 0). */
const DEAD_ROW_SCALE = 0.01;
/** GEMM timing: GPU time one timed pass aims at (short GEMMs are repeated within it). */
const GEMM_PASS_MS = 100;
/** GEMM timing: GPU time over which passes continue, so that a real GPU reaches working clocks. */
const GEMM_TIMING_MS = 1000;
/** `--profile --back-to-back`: steps profiled after the timed run, and unprofiled steps queued before each. */
const PROFILE_STEPS = 5;
const PROFILE_BEHIND = 19;

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "24576,6144" },
    batch: { type: "string", default: "4096" },
    steps: { type: "string", default: "3" },
    "aux-k": { type: "string", default: "256" },
    profile: { type: "boolean", default: false },
    dispatches: { type: "boolean", default: false },
    "back-to-back": { type: "boolean", default: false },
    ahead: { type: "string", default: String(DEFAULT_STEPS_AHEAD) },
    "dead-every": { type: "string", default: "2" },
    "sparse-aux": { type: "boolean", default: false },
    "dense-aux": { type: "boolean", default: false },
    "no-subgroups": { type: "boolean", default: false },
    f16: { type: "boolean", default: false },
    preset: { type: "string" },
  },
});
let preset: ReturnType<typeof getPreset> | undefined;
try {
  preset = values.preset ? getPreset(values.preset) : undefined;
} catch (e) {
  console.error(`bench/train_step.ts: ${(e as Error).message}`);
  Deno.exit(2);
}
const widths = preset
  ? [preset.layers.reduce((a, b) => a + b, 0)]
  : values.n.split(",").map(Number);
const B = Number(values.batch);
const steps = Number(values.steps);
const auxK = Number(values["aux-k"]);
const deadEvery = Number(values["dead-every"]);
if (!Number.isInteger(deadEvery) || deadEvery < 1) {
  throw new Error(`--dead-every must be a positive integer, got "${values["dead-every"]}"`);
}

const device = await getGpu({ quiet: true });
const gpu = values["no-subgroups"] ? { ...device, subgroupSize: 0 } : device;
console.log(`adapter: ${gpu.description}; subgroups: ${gpu.subgroupSize || "off"}`);

/** Random activations with a per-row offset and scale (values do not change the cost). */
function makeBatch(seed: number): Float32Array {
  const x = new Float32Array(B * D);
  let s = seed >>> 0;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = (s / 2 ** 32 - 0.5) * 4;
  }
  return x;
}

/**
 * `--profile --back-to-back`: PROFILE_STEPS profiled steps, each submitted behind PROFILE_BEHIND
 * unprofiled ones kept `ahead` in flight, so the GPU runs it at the clocks of a training run (a
 * profiled step drains the queue; alone, after an upload, a real GPU ran it at idle clocks).
 * Adds each phase's mean to `phases`; returns the number of steps profiled.
 */
async function profileBehind(
  engine: GpuEngine,
  batches: BatchValues[],
  B: number,
  ahead: number,
  phases: Map<string, number>,
): Promise<number> {
  let j = 0;
  const next = () => batches[j++ % batches.length];
  for (let r = 0; r < PROFILE_STEPS; r++) {
    const queue: StepTicket[] = [];
    for (let i = 0; i < PROFILE_BEHIND; i++) {
      queue.push(await engine.enqueueStep(next(), B));
      while (queue.length && (queue.length > ahead || queue[0].ready)) await queue.shift()!.stats();
    }
    engine.setProfile(true);
    await engine.enqueueStep(next(), B);
    engine.setProfile(false);
    for (const [label, ms] of engine.lastProfile ?? []) {
      phases.set(label, (phases.get(label) ?? 0) + ms / PROFILE_STEPS);
    }
    while (queue.length) await queue.shift()!.stats();
  }
  return PROFILE_STEPS;
}

/** Time the encoder GEMM over the batch; returns [best ms, kernel entry point]. */
async function gemmMs(n: number, encW: Float32Array): Promise<[number, string]> {
  const xs = uploadStorage(gpu, makeBatch(7), "bench xs");
  const w = uploadStorage(gpu, encW, "bench encW");
  const bias = createStorage(gpu, D * 4, "bench bDec");
  const rows = Math.min(B, maxGemmChunkRows(gpu, n));
  const pre = createStorage(gpu, rows * n * 4, "bench pre");
  // The variant the engine uses: texture GEMM on software adapters (d % 64 = 0), else storage.
  const tex = preferTextureGemm(gpu, D) ? createGemmTextures(gpu, { B, d: D, n }) : undefined;
  const dispatches: Dispatch[] = [];
  for (let r0 = 0; r0 < B; r0 += rows) {
    const sizes = { rows: Math.min(rows, B - r0), rowOffset: r0 };
    dispatches.push(
      ...(tex
        ? textureGemmOp(gpu, tex, { bDec: bias, pre }, sizes)
        : encoderGemmOp(gpu, { xs, encW: w, bDec: bias, pre }, { d: D, n, ...sizes })),
    );
  }
  const pipes = await Promise.all(dispatches.map((q) => getPipeline(gpu, q.kernel)));
  const record = (enc: GPUCommandEncoder) => {
    if (tex) encodeGemmTextureCopies(enc, tex, { xs, encW: w }); // the engine copies every step too
    encodeDispatches(gpu, enc, dispatches, pipes);
  };
  // Warm-up (compiles on first use), then at least two timed passes. A short GEMM (a real GPU) is
  // repeated within each pass and passes continue for ~1 s of GPU time: one GEMM alone, after the
  // idle host work before it, runs at idle clocks (26 ms against 4.8 ms sustained on an H100).
  let perRun = await timeGpu(gpu, record);
  let best = Infinity;
  let spent = 0;
  for (let pass = 0; pass < 2 || (spent < GEMM_TIMING_MS && pass < 50); pass++) {
    const reps = Math.min(64, Math.max(1, Math.ceil(GEMM_PASS_MS / perRun)));
    const ms = await timeGpu(gpu, (enc) => {
      for (let r = 0; r < reps; r++) record(enc);
    });
    spent += ms;
    perRun = ms / reps;
    best = Math.min(best, perRun);
  }
  releaseUniforms(dispatches);
  tex?.xs.texture.destroy();
  tex?.encW.texture.destroy();
  for (const b of [xs, w, bias, pre]) b.destroy();
  return [
    best,
    tex
      ? `${textureGemmKernel(textureGemmBlock(gpu, tex.n)).entry} + texture copies`
      : dispatches[0].kernel.entry,
  ];
}

const ahead = Number(values.ahead);
const mode = (values["back-to-back"] ? `, back to back, ${ahead} ahead` : "") +
  (values.f16 ? ", f16 batches" : "");

for (const n of widths) {
  const config = makeConfig(
    preset
      ? {
        arch: preset.arch,
        dIn: D,
        layers: preset.layers,
        k: preset.k,
        kPerLayer: preset.kPerLayer,
        auxAlpha: preset.auxAlpha,
        auxK,
        seed: 1,
      }
      : { arch: "topk", dIn: D, layers: [n], k: K, auxK, seed: 1 },
  );
  const state = initState(config);
  for (let f = 0; f < n; f += deadEvery) state.tokensSinceFired[f] = config.deadTokens;
  // Back to back, the dead half stays dead: with its encoder rows scaled by DEAD_ROW_SCALE its
  // pre-activations stay far below the live features' top 32, so it never fires, while AuxK still
  // finds 256 positive values per row and does all its work. (Rows of 0 gave pre = 0 and AuxK
  // values of 0, which the decode and the backward skip: AuxK then cost its selection only.)
  if (values["back-to-back"] && auxK > 0) {
    for (let f = 0; f < n; f += deadEvery) {
      for (let j = f * D; j < (f + 1) * D; j++) state.encW[j] *= DEAD_ROW_SCALE;
    }
  }
  const [ms, gemmEntry] = await gemmMs(n, state.encW);
  const gflops = (2 * B * D * n) / (ms / 1000) / 1e9;
  const engine = await GpuEngine.create(config, state, {
    gpu,
    // Back to back, only the profiled steps after the timed run are profiled (profileBehind).
    profile: values.profile && !values["back-to-back"],
    profileDispatches: values.dispatches,
    ...(values["sparse-aux"] ? { denseAux: false } : values["dense-aux"] ? { denseAux: true } : {}),
  });
  const phases = new Map<string, number>();
  /** Wall-timed profiles: CPU ms per phase (cores busy = CPU / wall). */
  const phaseCpu = new Map<string, number>();
  await engine.step(makeBatch(1), B); // compile + b_dec init, not timed
  // A batch revives most features; re-mark half of them dead before every timed step (untimed)
  // so AuxK keeps its full 256 slots per token.
  const st = await engine.readState();
  st.tokensSinceFired = state.tokensSinceFired;
  let total = 0;
  let best = Infinity;
  // Process CPU time (llvmpipe's worker threads included): on the shared box it moves less with
  // the other jobs' load than the wall time does.
  let cpu = 0;
  let aux = 0;
  let dead = 0;
  // --back-to-back: time spent in enqueueStep (recording and submitting) and awaiting statistics.
  let hostMs = 0, waitMs = 0;
  // --back-to-back: enqueueStep's host time by part (GpuEngine.hostMs), ms per step.
  let parts = "";
  // Steps the phase means are over.
  let profiled = steps;
  const batches = Array.from({ length: steps }, (_, s) => makeBatch(2 + s));
  // What the steps get: the batches, or with --f16 their f16 roundings (inference takes f32).
  const stepBatches: BatchValues[] = values.f16 ? batches.map((b) => new Float16Array(b)) : batches;
  if (values["back-to-back"]) {
    // As the trainer runs them: `ahead` later steps are submitted before a step's statistics are awaited.
    await engine.writeState(st);
    if (!gpu.isFallback) { for (let w = 0; w < 2; w++) await engine.encode(batches[0], B); }
    await gpu.device.queue.onSubmittedWorkDone();
    const h0 = { ...engine.hostMs };
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const queue: StepTicket[] = [];
    let last: StepStats | undefined;
    for (let s = 0; s < steps; s++) {
      const e0 = performance.now();
      queue.push(await engine.enqueueStep(stepBatches[s], B));
      const e1 = performance.now();
      hostMs += e1 - e0;
      while (queue.length && (queue.length > ahead || queue[0].ready)) {
        last = await queue.shift()!.stats();
      }
      waitMs += performance.now() - e1;
    }
    const w0 = performance.now();
    while (queue.length) last = await queue.shift()!.stats();
    waitMs += performance.now() - w0;
    total = performance.now() - t0;
    best = total / steps;
    const h = engine.hostMs;
    parts = `record ${((h.record - h0.record) / steps).toFixed(1)}, readbacks ${
      ((h.readbacks - h0.readbacks) / steps).toFixed(1)
    }, submit ${((h.submit - h0.submit) / steps).toFixed(1)}`;
    const c = process.cpuUsage(c0);
    cpu = (c.user + c.system) / 1e6;
    aux = last!.auxLoss[0];
    dead = last!.deadFraction[0];
    if (values.profile) profiled = await profileBehind(engine, stepBatches, B, ahead, phases);
  }
  for (let s = 0; s < steps && !values["back-to-back"]; s++) {
    await engine.writeState(st);
    // A real GPU idles at low clocks during the upload; two untimed inference passes (they leave
    // the state alone) bring it back to working clocks, as the previous step would in training.
    if (!gpu.isFallback) { for (let w = 0; w < 2; w++) await engine.encode(batches[s], B); }
    await gpu.device.queue.onSubmittedWorkDone();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const stats = await engine.step(stepBatches[s], B);
    aux = stats.auxLoss[0];
    dead = stats.deadFraction[0];
    const dt = performance.now() - t0;
    const c = process.cpuUsage(c0);
    for (const [label, ms] of engine.lastProfile ?? []) {
      phases.set(label, (phases.get(label) ?? 0) + ms / steps);
    }
    for (const [label, ms] of engine.lastProfileCpu ?? []) {
      phaseCpu.set(label, (phaseCpu.get(label) ?? 0) + ms / steps);
    }
    cpu += (c.user + c.system) / 1e6;
    total += dt;
    best = Math.min(best, dt);
  }
  const sec = total / 1000 / steps;
  const auxBlocks = engine.auxDecodeBlocks[0];
  // The AuxK path the GPU took in the last step (dense products or sparse sums).
  const auxPath = auxK > 0 ? (await engine.auxGradientPaths())[0] : undefined;
  engine.destroy();
  console.log(
    `${preset ? `${values.preset}: ` : ""}d=${D} n=${n} k=${config.k} B=${B} auxK=${auxK}${mode} (${
      Math.ceil(n / deadEvery)
    } dead${
      values["back-to-back"] ? ` at first, ${(dead * 100).toFixed(1)} % after the last step` : ""
    }, aux term ${aux.toFixed(3)}): ` +
      `step ${(sec * 1000).toFixed(0)} ms = ${(B / sec).toFixed(0)} tokens/s ` +
      `(best ${best.toFixed(0)} ms, ${(cpu / steps).toFixed(1)} CPU-s per step); ` +
      `encoder GEMM ${ms.toFixed(ms < 100 ? 2 : 0)} ms = ${
        gflops.toFixed(1)
      } GFLOP/s (${gemmEntry}); ` +
      `step / GEMM = ${(sec * 1000 / ms).toFixed(2)}` +
      (auxPath ? `; AuxK path ${auxPath}` : "") +
      (auxK > 0 && auxBlocks ? `; AuxK decoded in ${auxBlocks} feature blocks` : ""),
  );
  if (values["back-to-back"]) {
    console.log(
      `  per step: ${(hostMs / steps).toFixed(1)} ms in enqueueStep (${parts}), ` +
        `${(waitMs / steps).toFixed(1)} ms awaiting statistics`,
    );
  }
  if (phases.size) {
    const gpuTotal = [...phases.values()].reduce((a, b) => a + b, 0);
    console.log(
      `  GPU time per phase (mean of ${profiled} steps${
        values["back-to-back"] ? `, each behind ${PROFILE_BEHIND} back-to-back steps` : ""
      }, ${
        defaultPhaseTiming(gpu) === "wall" ? "wall time per submitted phase" : "GPU timestamps"
      }; all phases ${gpuTotal.toFixed(1)} ms):`,
    );
    for (const [label, ms] of phases) {
      const cpu = phaseCpu.get(label);
      // Under a millisecond (the round trip taken off) the ratio says nothing.
      const cores = cpu === undefined || ms < 1 ? "" : ` (${(cpu / ms).toFixed(2)} cores busy)`;
      console.log(`    ${label.padEnd(28)} ${ms.toFixed(2).padStart(10)} ms${cores}`);
    }
  }
}
