/**
 * Encoder GEMM and top-k throughput on this machine's WebGPU adapter (issue 3's speed figures).
 *
 *   deno run -A bench/encoder_gemm_bench.ts [--variant tex|tex32|tex64|texsg|block4|wide|tiled] [--reps 2] [--n 24576,6144]
 *
 * For each n: pre = (xs − bDec)·encWᵀ at B = 4096, d = 768 in row chunks (the largest that fit one
 * storage binding), timed on the GPU (timestamp queries when available), reported as GFLOP/s
 * (2·B·d·n FLOPs), also per CPU-second of this process (llvmpipe's threads included) since the
 * development machines are shared and wall time swings with their load; "tex" (the default on
 * software adapters when d % 64 == 0) includes copying xs and encW into textures. Then the per-row
 * top-32 over the same [B, n] pre (chunked the same way; from the subgroup GEMM's chunk maxima
 * where it runs, as in the engine); last, the sparse decode (4 levels of
 * 32 slots) through storage loads and through the decW texture.
 * Checks first (a sampled row of pre against a float64 dot product), then times; prints a
 * markdown table to paste into bench/README.md. Never run from tests.
 */
import { helpFromHeader } from "./_help.ts";
import { parseArgs } from "node:util";
import process from "node:process";
import { getGpu } from "../lib/gpu/device.ts";
import { createStorage, readF32, uploadStorage } from "../lib/gpu/buffer.ts";
import { encodeDispatches, getPipeline } from "../lib/gpu/kernel.ts";
import type { Dispatch } from "../lib/gpu/kernel.ts";
import { timeGpu } from "../lib/gpu/timer.ts";
import { releaseUniforms } from "../lib/sae/ops/grid.ts";
import {
  chunkMaxLength,
  createGemmTextures,
  defaultGemmVariant,
  encodeGemmTextureCopies,
  encoderGemmOp,
  type GemmVariant,
  gemmWritesChunkMax,
  maxGemmChunkRows,
  preferTextureGemm,
  type TextureGemmBlock,
  textureGemmBlock,
  textureGemmOp,
} from "../lib/sae/ops/encoder_gemm.ts";
import { createLayerTable, selectTopKOp } from "../lib/sae/ops/topk.ts";
import {
  createLevelBounds,
  sparseDecodeOp,
  textureDecodeOp,
  treeLevels,
} from "../lib/sae/ops/sparse_decode.ts";
import { createMatrixTexture, encodeMatrixTextureCopy } from "../lib/sae/ops/matrix_texture.ts";

await helpFromHeader(import.meta.url);

/** Sparse decode of B rows × K = 32 slots in 4 tree levels (storage and texture paths). */
async function benchDecode(gpu: Gpu, n: number, reps: number): Promise<string[]> {
  const slots = 32, plan = treeLevels([8, 8, 8, 8]), L = 4;
  const idx = uploadStorage(gpu, new Uint32Array(B * slots).map((_, i) => (i * 7919) % n), "idx");
  const val = uploadStorage(gpu, new Float32Array(B * slots).fill(0.5), "val");
  const decW = uploadStorage(gpu, new Float32Array(n * D).map((_, i) => Math.sin(i)), "decW");
  const bDec = createStorage(gpu, D * 4, "bDec");
  const levelBounds = createLevelBounds(gpu, plan);
  const out = createStorage(gpu, L * B * D * 4, "levels");
  const bufs = { idx, val, bDec, levelBounds, out };
  const sizes = { B, d: D, K: slots, plan, withBias: true };
  const storage = sparseDecodeOp(gpu, { ...bufs, decW }, sizes);
  const lines: string[] = [];
  const best = async (run: () => Promise<{ ms: number; cpuMs: number }>) => {
    await run();
    let b = { ms: Infinity, cpuMs: Infinity };
    for (let i = 0; i < reps; i++) {
      const t = await run();
      if (t.ms < b.ms) b = t;
    }
    return b;
  };
  const s = await best(() => timeDispatches(gpu, storage));
  lines.push(`| storage | ${s.ms.toFixed(0)} | ${s.cpuMs.toFixed(0)} |`);
  const decT = createMatrixTexture(gpu, n, D, "decW texture");
  const texDecode = textureDecodeOp(gpu, decT, bufs, sizes);
  const texPipes = await Promise.all(texDecode.map((x) => getPipeline(gpu, x.kernel)));
  const t = await best(() =>
    timed(gpu, (enc) => {
      encodeMatrixTextureCopy(enc, decW, decT);
      encodeDispatches(gpu, enc, texDecode, texPipes);
    })
  );
  lines.push(`| texture (incl. decW copy) | ${t.ms.toFixed(0)} | ${t.cpuMs.toFixed(0)} |`);
  releaseUniforms([...storage, ...texDecode]);
  decT.texture.destroy();
  for (const b of [idx, val, decW, bDec, levelBounds, out]) b.destroy();
  return lines;
}

/** The issue's benchmark shape (paper-scale GPT-2 small SAE). */
const B = 4096, D = 768, K = 32;

type Gpu = Awaited<ReturnType<typeof getGpu>>;

/** GPU milliseconds of `record`, and the CPU milliseconds this process spent meanwhile. */
async function timed(gpu: Gpu, record: (enc: GPUCommandEncoder) => void) {
  await gpu.device.queue.onSubmittedWorkDone();
  const c0 = process.cpuUsage();
  const ms = await timeGpu(gpu, record);
  const c = process.cpuUsage(c0);
  return { ms, cpuMs: (c.user + c.system) / 1000 };
}

async function timeDispatches(gpu: Gpu, dispatches: Dispatch[]) {
  const pipelines = await Promise.all(dispatches.map((x) => getPipeline(gpu, x.kernel)));
  return await timed(gpu, (enc) => encodeDispatches(gpu, enc, dispatches, pipelines));
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      variant: { type: "string" },
      reps: { type: "string", default: "2" },
      n: { type: "string", default: "24576,6144" },
    },
  });
  const gpu = await getGpu({ quiet: true });
  const variant =
    (values.variant ?? (preferTextureGemm(gpu, D) ? "tex" : defaultGemmVariant(gpu, D))) as
      | GemmVariant
      | "tex"
      | "tex32"
      | "tex64"
      | "texsg";
  const reps = Number(values.reps);
  console.log(
    `adapter: ${gpu.description}; GEMM variant: ${variant}; timestamps: ${gpu.hasTimestamps}`,
  );
  const rows: string[] = [];
  for (const n of values.n!.split(",").map(Number)) {
    const chunk = Math.min(1024, maxGemmChunkRows(gpu, n));
    const xsHost = new Float32Array(B * D).map((_, i) => Math.sin(i * 0.37));
    const wHost = new Float32Array(n * D).map((_, i) => Math.cos(i * 0.11) / Math.sqrt(D));
    const xs = uploadStorage(gpu, xsHost, "xs");
    const encW = uploadStorage(gpu, wHost, "encW");
    const bDec = createStorage(gpu, D * 4, "bDec");
    const pre = createStorage(gpu, chunk * n * 4, "pre chunk");
    const gemm: Dispatch[] = [];
    const tex = variant.startsWith("tex") ? createGemmTextures(gpu, { B, d: D, n }) : undefined;
    // "tex" picks the block as the engine does; tex32/tex64/texsg force one.
    const block: TextureGemmBlock = variant === "tex"
      ? textureGemmBlock(gpu, n)
      : variant === "tex64"
      ? 64
      : variant === "texsg"
      ? "sg"
      : 32;
    // As in the engine, the subgroup GEMM also writes each row's maxima per 64 features, which
    // the top-k below reads (the chunk GEMM's cost includes them).
    const cmax = tex && gemmWritesChunkMax(block)
      ? createStorage(gpu, chunkMaxLength(chunk, n) * 4, "cmax")
      : undefined;
    for (let r0 = 0; r0 < B; r0 += chunk) {
      const rows = Math.min(chunk, B - r0);
      if (tex) {
        gemm.push(
          ...textureGemmOp(gpu, tex, { bDec, pre, ...(cmax ? { cmax } : {}) }, {
            rows,
            rowOffset: r0,
          }, block),
        );
      } else {
        const v = variant as GemmVariant;
        gemm.push(
          ...encoderGemmOp(gpu, { xs, encW, bDec, pre }, {
            d: D,
            n,
            rows,
            rowOffset: r0,
            variant: v,
          }),
        );
      }
    }
    const pipelines = await Promise.all(gemm.map((x) => getPipeline(gpu, x.kernel)));
    const runGemm = () =>
      timed(gpu, (enc) => {
        if (tex) encodeGemmTextureCopies(enc, tex, { xs, encW });
        encodeDispatches(gpu, enc, gemm, pipelines);
      });
    // Check first: the last chunk's row 0 against float64.
    await runGemm();
    const lastStart = Math.floor((B - 1) / chunk) * chunk;
    const got = await readF32(gpu, pre, n);
    let worst = 0;
    for (let f = 0; f < n; f += 97) {
      let s = 0;
      for (let j = 0; j < D; j++) s += xsHost[lastStart * D + j] * wHost[f * D + j];
      worst = Math.max(worst, Math.abs(got[f] - s));
    }
    if (worst > 1e-3) throw new Error(`GEMM check failed: max error ${worst}`);
    console.log(`check passed (max error ${worst.toExponential(1)}); timing`);
    let best = { ms: Infinity, cpuMs: Infinity };
    for (let i = 0; i < reps; i++) {
      const t = await runGemm();
      if (t.ms < best.ms) best = t;
    }
    const gflop = (2 * B * D * n) / 1e9;
    const gflops = gflop / (best.ms / 1e3), perCpu = gflop / (best.cpuMs / 1e3);
    let copyMs = 0;
    if (tex) {
      copyMs = (await timed(gpu, (enc) => encodeGemmTextureCopies(enc, tex, { xs, encW }))).ms;
    }
    console.log(
      `GEMM B=${B} d=${D} n=${n}: ${best.ms.toFixed(0)} ms (texture copies ${
        copyMs.toFixed(0)
      } ms), ` +
        `${gflops.toFixed(1)} GFLOP/s wall, ${perCpu.toFixed(1)} GFLOP per CPU-second`,
    );
    // Top-k on the same chunks (pre and cmax hold the last chunk; every chunk costs the same).
    const layout = { sizes: [n], kPerLayer: [K], gated: false };
    const layerTable = createLayerTable(gpu, layout);
    const idx = createStorage(gpu, B * K * 4, "idx");
    const val = createStorage(gpu, B * K * 4, "val");
    const topk: Dispatch[] = [];
    for (let r0 = 0; r0 < B; r0 += chunk) {
      topk.push(
        ...selectTopKOp(gpu, { pre, layerTable, idx, val, ...(cmax ? { cmax } : {}) }, layout, {
          n,
          rows: Math.min(chunk, B - r0),
          rowOffset: r0,
        }),
      );
    }
    await timeDispatches(gpu, topk);
    let bestTopk = { ms: Infinity, cpuMs: Infinity };
    for (let i = 0; i < reps; i++) {
      const t = await timeDispatches(gpu, topk);
      if (t.ms < bestTopk.ms) bestTopk = t;
    }
    console.log(
      `top-${K} of [${B}, ${n}]: ${bestTopk.ms.toFixed(0)} ms (${bestTopk.cpuMs.toFixed(0)} CPU ms${
        cmax ? ", from the GEMM's chunk maxima" : ""
      })`,
    );
    rows.push(
      `| ${n} | ${
        tex ? `tex (${block === "sg" ? "subgroup 16 × 64" : `${block}-wide`})` : variant
      } | ${best.ms.toFixed(0)} | ${copyMs.toFixed(0)} | ${gflops.toFixed(1)} | ` +
        `${perCpu.toFixed(1)} | ${bestTopk.ms.toFixed(0)} | ${bestTopk.cpuMs.toFixed(0)} |`,
    );
    releaseUniforms([...gemm, ...topk]);
    tex?.xs.texture.destroy(), tex?.encW.texture.destroy();
    for (const b of [xs, encW, bDec, pre, layerTable, idx, val]) b.destroy();
    cmax?.destroy();
  }
  const decodeRows = await benchDecode(gpu, 24576, reps);
  console.log(`\nAdapter: ${gpu.description}. B = ${B}, d = ${D}, k = ${K}, best of ${reps}.\n`);
  console.log(
    "| n | GEMM variant | GEMM ms | of which texture copies ms | GFLOP/s (wall) | GFLOP per CPU-s | " +
      "top-k ms | top-k CPU ms |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) console.log(r);
  console.log(`\nSparse decode, B = ${B}, d = ${D}, n = 24576, 32 slots, 4 levels:\n`);
  console.log("| path | ms | CPU ms |");
  console.log("|---|---|---|");
  for (const r of decodeRows) console.log(r);
}
