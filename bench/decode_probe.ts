/**
 * The step's sparse decode (kernels/sparse_decode.wgsl decode_slots16_tex4) alone at the issue's
 * shape: B rows × k = 32 slots at random features of n = 24 576, d = 768, decW read through its
 * texture mirror as the engine does on software adapters. The random rows miss the CPU caches, as
 * a real step's do (made-up indices that repeat few rows time the kernel at half its real cost).
 *
 *   deno run -A bench/decode_probe.ts [rows=4096] [matryoshka]
 *
 * `matryoshka` decodes the four prefix levels of `matryoshka-4layer-l0-32` instead (levels by
 * feature: decode_levels16_tex).
 *
 * Prints the wall time of four runs (the first includes warm-up).
 */
import { helpFromHeader } from "./_help.ts";
import { lcg } from "./_probe.ts";
import { getGpu } from "../lib/gpu/device.ts";
import { createStorage, uploadStorage } from "../lib/gpu/buffer.ts";
import { encodeDispatches, getPipeline } from "../lib/gpu/kernel.ts";
import { timeGpu } from "../lib/gpu/timer.ts";
import { createMatrixTexture, encodeMatrixTextureCopy } from "../lib/sae/ops/matrix_texture.ts";
import {
  createLevelBounds,
  matryoshkaLevels,
  singleLevel,
  textureDecodeOp,
} from "../lib/sae/ops/sparse_decode.ts";
import { getPreset } from "../lib/tree/presets.ts";

await helpFromHeader(import.meta.url);
const gpu = await getGpu();
const B = Number(Deno.args[0] ?? 4096);
/** Features, width and active slots of the benchmark shape. */
const n = 24576, d = 768, K = 32;
const decW = uploadStorage(gpu, new Float32Array(n * d).map((_, i) => Math.sin(i)), "decW");
const decT = createMatrixTexture(gpu, n, d, "decW texture");
const enc0 = gpu.device.createCommandEncoder();
encodeMatrixTextureCopy(enc0, decW, decT);
gpu.device.queue.submit([enc0.finish()]);
const next = lcg(3);
const idx = new Uint32Array(B * K).map(() => next() % n);
const val = new Float32Array(B * K).map((_, i) => 1 + (i % 7));
const plan = Deno.args[1] === "matryoshka"
  ? matryoshkaLevels(getPreset("matryoshka-4layer-l0-32").layers)
  : singleLevel(K);
const ops = textureDecodeOp(gpu, decT, {
  idx: uploadStorage(gpu, idx, "idx"),
  val: uploadStorage(gpu, val, "val"),
  bDec: createStorage(gpu, d * 4, "bDec"),
  levelBounds: createLevelBounds(gpu, plan),
  out: createStorage(gpu, plan.bounds.length * B * d * 4, "recon"),
}, { B, d, K, plan, withBias: true });
const pipes = await Promise.all(ops.map((o) => getPipeline(gpu, o.kernel)));
for (let r = 0; r < 4; r++) {
  const ms = await timeGpu(gpu, (e) => encodeDispatches(gpu, e, ops, pipes));
  console.log(`${ops[0].kernel.entry} ${B} rows: ${ms.toFixed(1)} ms`);
}
