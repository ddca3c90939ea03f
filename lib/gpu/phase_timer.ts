/**
 * GPU time per named phase of one step's recording. Two ways to measure:
 * - "timestamps": timestamp queries written by empty compute passes between the phases (WebGPU
 *   writes timestamps only at pass boundaries); one submit, exact on real GPUs.
 * - "wall": each phase is finished as a command buffer of its own; `submit` then submits them one
 *   at a time, the host timing each until the queue reports it done. For software adapters, whose
 *   timestamps do not wait for the dispatches before them (lavapipe put a 10 s GEMM's time in the
 *   phases after it: bench/README.md, eighth session). Each phase then includes one submit and one
 *   completion round trip of the host (a few ms), so short phases read high.
 */
import { GpuError } from "../errors.ts";
import type { Gpu } from "./device.ts";

/** Most marks one timer records (one timestamp each, plus the start). */
const MAX_MARKS = 255;

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
    for (const phase of phases) {
      const t0 = performance.now();
      queue.submit([phase]);
      await queue.onSubmittedWorkDone();
      this.#wallMs.push(performance.now() - t0);
    }
    queue.submit([last]);
  }

  /** After `submit`: milliseconds per label (phases with one label summed). */
  async read(): Promise<Map<string, number>> {
    let ms = this.#wallMs;
    if (this.#querySet) {
      const t = await this.#readTimestamps();
      ms = t.slice(1).map((x, i) => x - t[i]);
    }
    const out = new Map<string, number>();
    this.#labels.forEach((label, i) => out.set(label, (out.get(label) ?? 0) + ms[i]));
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
