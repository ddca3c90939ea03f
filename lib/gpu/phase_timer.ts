/**
 * GPU time per named phase of one step's recording. Two ways to measure:
 * - "timestamps": timestamp queries written by empty compute passes between the phases (WebGPU
 *   writes timestamps only at pass boundaries); one submit, exact on real GPUs.
 * - "wall": each phase is finished as a command buffer of its own; `submit` then submits them one
 *   at a time, the host timing each until the queue reports it done. For software adapters, whose
 *   timestamps do not wait for the dispatches before them (lavapipe put a 10 s GEMM's time in the
 *   phases after it: bench/README.md, eighth session). The round trip of an empty submit (~11 ms
 *   on lavapipe through Deno) is taken off each phase. The process's CPU time over each phase is
 *   kept too (`readCpu`): on a software adapter, whose threads do the dispatches while the host
 *   waits, CPU time / wall time is how many cores the phase kept busy.
 */
import process from "node:process";
import { GpuError } from "../errors.ts";
import type { Gpu } from "./device.ts";

/** Most marks one timer records (one timestamp each, plus the start; per-dispatch marks need many). */
const MAX_MARKS = 4095;
/** Empty submits timed per step (wall timing); the fastest is taken off every phase. */
const EMPTY_ROUND_TRIPS = 3;
/** First character of a dispatch's mark: named after the phase mark that follows it (`dispatchMark`). */
const DISPATCH = "\u0000";

/** The label of a per-dispatch mark for kernel `entry`; `read` names it "<phase>: <entry>". */
export function dispatchMark(entry: string): string {
  return DISPATCH + entry;
}

/** How a `PhaseTimer` measures. */
export type PhaseTiming = "timestamps" | "wall";

/** Timestamps where the adapter has them and is a real GPU, else wall time. */
export function defaultPhaseTiming(gpu: Gpu): PhaseTiming {
  return gpu.hasTimestamps && !gpu.isFallback ? "timestamps" : "wall";
}

/**
 * Records marks between phases of one step; `read` sums the milliseconds per label. `begin` and
 * `mark` return the encoder to go on recording into: the same one with timestamps, a new one
 * (after submitting the phase) with wall timing.
 */
export class PhaseTimer {
  readonly timing: PhaseTiming;
  #gpu: Gpu;
  #querySet?: GPUQuerySet;
  #labels: string[] = [];
  /** Wall timing: the command buffer before the first phase, then one per phase. */
  #held: GPUCommandBuffer[] = [];
  /** Wall timing: milliseconds per phase, filled by `submit`. */
  #wallMs: number[] = [];
  /** Wall timing: the process's CPU milliseconds (user + system) per phase. */
  #cpuMs: number[] = [];

  /** A timer on `gpu`; throws when "timestamps" is asked of an adapter without timestamp queries. */
  constructor(gpu: Gpu, timing: PhaseTiming = defaultPhaseTiming(gpu)) {
    if (timing === "timestamps" && !gpu.hasTimestamps) {
      throw new GpuError(
        `phase timing by timestamps needs the timestamp-query feature, which ${gpu.description} lacks`,
      );
    }
    this.#gpu = gpu;
    this.timing = timing;
    if (timing === "timestamps") {
      this.#querySet = gpu.device.createQuerySet({ type: "timestamp", count: MAX_MARKS + 1 });
    }
  }

  /** Start timing; call before the first phase is recorded. */
  begin(encoder: GPUCommandEncoder): GPUCommandEncoder {
    this.#labels = [];
    this.#held = [];
    this.#wallMs = [];
    this.#cpuMs = [];
    return this.#stamp(encoder, 0);
  }

  /** End the phase recorded since the last mark (or `begin`) and name it `label`. */
  mark(encoder: GPUCommandEncoder, label: string): GPUCommandEncoder {
    if (this.#labels.length === MAX_MARKS) {
      throw new GpuError(`PhaseTimer: more than ${MAX_MARKS} marks in one step`);
    }
    this.#labels.push(label);
    return this.#stamp(encoder, this.#labels.length);
  }

  #stamp(encoder: GPUCommandEncoder, index: number): GPUCommandEncoder {
    if (this.#querySet) {
      encoder.beginComputePass({
        timestampWrites: { querySet: this.#querySet, beginningOfPassWriteIndex: index },
      }).end();
      return encoder;
    }
    // Wall: hold what is recorded so far (at `begin`, the work before the first phase).
    this.#held.push(encoder.finish());
    return this.#gpu.device.createCommandEncoder({ label: "profiled phase" });
  }

  /**
   * Submit the step's last command buffer (recorded after the last mark), and with wall timing
   * every held phase before it, one at a time; resolves once all are submitted (wall: done).
   */
  async submit(last: GPUCommandBuffer): Promise<void> {
    const { queue } = this.#gpu.device;
    if (this.#querySet) {
      queue.submit([last]);
      return;
    }
    const [before, ...phases] = this.#held;
    this.#held = [];
    queue.submit([before]);
    await queue.onSubmittedWorkDone();
    // What a submit and its completion cost with nothing in it, taken off every phase.
    const empty = { wall: Infinity, cpu: Infinity };
    for (let i = 0; i < EMPTY_ROUND_TRIPS; i++) {
      const t = await this.#roundTrip(this.#gpu.device.createCommandEncoder().finish());
      empty.wall = Math.min(empty.wall, t.wall);
      empty.cpu = Math.min(empty.cpu, t.cpu);
    }
    for (const phase of phases) {
      const t = await this.#roundTrip(phase);
      this.#wallMs.push(Math.max(0, t.wall - empty.wall));
      this.#cpuMs.push(Math.max(0, t.cpu - empty.cpu));
    }
    queue.submit([last]);
  }

  /** Submit one command buffer and wait for it: wall and process CPU milliseconds. */
  async #roundTrip(commands: GPUCommandBuffer): Promise<{ wall: number; cpu: number }> {
    const { queue } = this.#gpu.device;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    queue.submit([commands]);
    await queue.onSubmittedWorkDone();
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { wall, cpu: (c.user + c.system) / 1000 };
  }

  /** After `submit`: milliseconds per label (phases with one label summed). */
  async read(): Promise<Map<string, number>> {
    let ms = this.#wallMs;
    if (this.#querySet) {
      const t = await this.#readTimestamps();
      ms = t.slice(1).map((x, i) => x - t[i]);
    }
    return this.#byLabel(ms);
  }

  /** After `submit` with wall timing: the process's CPU milliseconds per label (empty with timestamps). */
  readCpu(): Map<string, number> {
    return this.#querySet ? new Map() : this.#byLabel(this.#cpuMs);
  }

  /** Sum per label; dispatch marks take the label of the phase mark after them as a prefix. */
  #byLabel(ms: number[]): Map<string, number> {
    const out = new Map<string, number>();
    const names = [...this.#labels];
    let pending: number[] = [];
    names.forEach((label, i) => {
      if (label.startsWith(DISPATCH)) pending.push(i);
      else {
        for (const j of pending) names[j] = `${label}: ${names[j].slice(1)}`;
        pending = [];
      }
    });
    for (const j of pending) names[j] = names[j].slice(1);
    names.forEach((label, i) => out.set(label, (out.get(label) ?? 0) + ms[i]));
    return out;
  }

  /** The timestamps in milliseconds. */
  async #readTimestamps(): Promise<number[]> {
    const { device } = this.#gpu;
    const count = this.#labels.length + 1;
    const resolve = device.createBuffer({
      size: count * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const staging = device.createBuffer({
      size: count * 8,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = device.createCommandEncoder({ label: "phase timer readback" });
    encoder.resolveQuerySet(this.#querySet!, 0, count, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, staging, 0, count * 8);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    resolve.destroy();
    return [...t].map((x) => Number(x - t[0]) / 1e6);
  }

  /** Free the query set. */
  destroy() {
    this.#querySet?.destroy();
  }
}
