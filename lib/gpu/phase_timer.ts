/**
 * GPU time per named phase of one command encoder, from timestamp queries written by empty compute
 * passes between the phases (timestamps may only be written at pass boundaries in WebGPU).
 */
import { GpuError } from "../errors.ts";
import type { Gpu } from "./device.ts";

/** Most marks one timer records (one timestamp each, plus the start). */
const MAX_MARKS = 255;

/** Records timestamps between phases of one encoder; `read` sums the milliseconds per label. */
export class PhaseTimer {
  #gpu: Gpu;
  #querySet: GPUQuerySet;
  #labels: string[] = [];

  /** A timer on `gpu`; throws when the adapter has no timestamp queries. */
  constructor(gpu: Gpu) {
    if (!gpu.hasTimestamps) {
      throw new GpuError(
        `phase timing needs the timestamp-query feature, which ${gpu.description} lacks`,
      );
    }
    this.#gpu = gpu;
    this.#querySet = gpu.device.createQuerySet({ type: "timestamp", count: MAX_MARKS + 1 });
  }

  /** Write the starting timestamp; call before the first phase is recorded. */
  begin(encoder: GPUCommandEncoder) {
    this.#labels = [];
    this.#stamp(encoder, 0);
  }

  /** End the phase recorded since the last mark (or `begin`) and name it `label`. */
  mark(encoder: GPUCommandEncoder, label: string) {
    if (this.#labels.length === MAX_MARKS) {
      throw new GpuError(`PhaseTimer: more than ${MAX_MARKS} marks in one encoder`);
    }
    this.#labels.push(label);
    this.#stamp(encoder, this.#labels.length);
  }

  #stamp(encoder: GPUCommandEncoder, index: number) {
    encoder.beginComputePass({
      timestampWrites: { querySet: this.#querySet, beginningOfPassWriteIndex: index },
    }).end();
  }

  /** After the encoder was submitted: milliseconds per label (phases with one label summed). */
  async read(): Promise<Map<string, number>> {
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
    encoder.resolveQuerySet(this.#querySet, 0, count, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, staging, 0, count * 8);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    resolve.destroy();
    const out = new Map<string, number>();
    this.#labels.forEach((label, i) => {
      const ms = Number(t[i + 1] - t[i]) / 1e6;
      out.set(label, (out.get(label) ?? 0) + ms);
    });
    return out;
  }

  /** Free the query set. */
  destroy() {
    this.#querySet.destroy();
  }
}
