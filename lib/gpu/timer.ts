/**
 * GPU timing with timestamp queries, falling back to wall-clock around `onSubmittedWorkDone` where
 * the adapter has none or is a software adapter (llvmpipe/lavapipe: its timestamps do not always
 * wait for the dispatches before them; a 0.3 s sparse decode in bench/encoder_gemm_bench.ts read 0 ms).
 */
import type { Gpu } from "./device.ts";

/** Time `record(encoder)` on the GPU; returns milliseconds. */
export async function timeGpu(
  gpu: Gpu,
  record: (encoder: GPUCommandEncoder) => void,
): Promise<number> {
  const { device } = gpu;
  if (!gpu.hasTimestamps || gpu.isFallback) {
    await device.queue.onSubmittedWorkDone();
    const t0 = performance.now();
    const encoder = device.createCommandEncoder();
    record(encoder);
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  }
  const querySet = device.createQuerySet({ type: "timestamp", count: 2 });
  const resolve = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = device.createCommandEncoder();
  // An empty pass carries each timestamp so the recorded work sits between them.
  encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0 } }).end();
  record(encoder);
  encoder.beginComputePass({ timestampWrites: { querySet, endOfPassWriteIndex: 1 } }).end();
  encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
  encoder.copyBufferToBuffer(resolve, 0, read, 0, 16);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const [t0, t1] = new BigUint64Array(read.getMappedRange());
  read.unmap();
  read.destroy();
  resolve.destroy();
  querySet.destroy();
  return Number(t1 - t0) / 1e6;
}
