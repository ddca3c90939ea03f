/**
 * Activation store throughput: rows/s written and read (sequential and shuffled), f16
 * and f32, d=768, plus read + GPU upload with f16→f32 widening on the GPU.
 *
 *   deno run -A bench/store_bench.ts [rows=200000] [--no-gpu]
 *
 * Writes to a temp folder (removed afterwards). Reads right after writing, so the
 * shards are in the OS page cache: the figures measure Arbor's own cost (read call,
 * CRC-32 check, batch assembly), not the disk. Results go in bench/README.md.
 */
import { helpFromHeader } from "./_help.ts";
import { ActivationWriter } from "../lib/store/writer.ts";
import { ActivationReader, toGpu } from "../lib/store/reader.ts";
import type { Dtype } from "../lib/store/manifest.ts";
import { getGpu } from "../lib/gpu/device.ts";

await helpFromHeader(import.meta.url);

/** Row width: GPT-2 small's residual stream. */
const D = 768;
/** Rows per `append` call, as an extract loop would hand them over. */
const CHUNK = 8192;
/** Rows per read batch (a typical training batch). */
const BATCH = 4096;

const rows = Number(Deno.args.find((a) => /^\d+$/.test(a)) ?? 200_000);
const useGpu = !Deno.args.includes("--no-gpu");

interface Row {
  dtype: Dtype;
  op: string;
  rows: number;
  seconds: number;
  bytesPerRow: number;
}
const results: Row[] = [];

/** One chunk of normal-ish values, reused for every append (content does not change the cost). */
function chunkData(): Float32Array {
  const x = new Float32Array(CHUNK * D);
  for (let i = 0; i < x.length; i++) {
    x[i] = (Math.random() + Math.random() + Math.random() - 1.5) * 2;
  }
  return x;
}

async function timeRead(reader: ActivationReader, order: "sequential" | "shuffle", dtype: Dtype) {
  const t0 = performance.now();
  let n = 0;
  for await (const b of reader.batches({ batchSize: BATCH, order, seed: 1 })) n += b.rows;
  const seconds = (performance.now() - t0) / 1000;
  if (n !== rows) throw new Error(`read ${n} rows, wrote ${rows}`);
  results.push({ dtype, op: `read ${order}`, rows: n, seconds, bytesPerRow: reader.rowBytes });
}

const data = chunkData();
const root = await Deno.makeTempDir({ prefix: "arbor_store_bench_" });
const gpu = useGpu ? await getGpu({ quiet: false }) : null;
try {
  for (const dtype of ["f16", "f32"] as const) {
    const dir = `${root}/${dtype}`;
    const t0 = performance.now();
    const w = await ActivationWriter.create(dir, { dIn: D, dtype, provenance: { model: "bench" } });
    for (let s = 0; s < rows; s += CHUNK) {
      const n = Math.min(CHUNK, rows - s);
      await w.append(n === CHUNK ? data : data.subarray(0, n * D));
    }
    const m = await w.close();
    const seconds = (performance.now() - t0) / 1000;
    const bytesPerRow = D * (dtype === "f16" ? 2 : 4);
    results.push({ dtype, op: `write (${m.shards.length} shards)`, rows, seconds, bytesPerRow });
    const reader = await ActivationReader.open(dir);
    await timeRead(reader, "sequential", dtype);
    await timeRead(reader, "shuffle", dtype);
    if (gpu) {
      const t1 = performance.now();
      let n = 0;
      for await (const b of reader.batches({ batchSize: BATCH, order: "shuffle", seed: 1 })) {
        const buf = await toGpu(gpu, b);
        await gpu.device.queue.onSubmittedWorkDone();
        buf.destroy();
        n += b.rows;
      }
      results.push({
        dtype,
        op: "read shuffle + GPU upload (f32 on GPU)",
        rows: n,
        seconds: (performance.now() - t1) / 1000,
        bytesPerRow,
      });
    }
  }
} finally {
  await Deno.remove(root, { recursive: true });
}

console.log(
  `\nstore throughput, d=${D}, ${rows} rows, batch ${BATCH}, ${navigator.hardwareConcurrency} threads`,
);
console.log("| dtype | operation | rows | seconds | rows/s | MB/s (file bytes) |");
console.log("|---|---|---:|---:|---:|---:|");
for (const r of results) {
  const rps = r.rows / r.seconds;
  console.log(
    `| ${r.dtype} | ${r.op} | ${r.rows} | ${r.seconds.toFixed(2)} | ${
      Math.round(rps).toLocaleString("en-US")
    } | ${(rps * r.bytesPerRow / 1e6).toFixed(0)} |`,
  );
}
