/**
 * The products a dense AuxK path would run (bench/README.md, "What would cut AuxK's cost in a real
 * run"), timed on the texture GEMM the engine uses on software adapters, copies into the textures
 * included: for D dead features padded to Dp (a multiple of 64), B = 4096, d = 768,
 *   ê = A·W_d        A [B, Dp] dense AuxK codes, W_dᵀ [d, Dp] the dead decoder rows transposed
 *   G = U·W_dᵀ       U [B, d] the AuxK residual gradient, W_d [Dp, d]; dpre = G where A > 0
 *   ∇W_d = Aᵀ·U      Aᵀ [Dp, B], Uᵀ [d, B] (∇W_enc of the dead rows = dPREᵀ·xs, the same shape)
 *
 *   deno run -A bench/dense_aux_probe.ts [--dp 1280,320] [--reps 3]
 *
 * Random operands (values do not change the cost). Not used by the engine yet.
 */
import { helpFromHeader } from "./_help.ts";
import { parseArgs } from "node:util";
import { getGpu } from "../lib/gpu/device.ts";
import { createStorage, uploadStorage } from "../lib/gpu/buffer.ts";
import { encodeDispatches, getPipeline } from "../lib/gpu/kernel.ts";
import {
  createGemmTextures,
  encodeGemmTextureCopies,
  textureGemmOp,
} from "../lib/sae/ops/encoder_gemm.ts";

await helpFromHeader(import.meta.url);

const { values } = parseArgs({
  options: { dp: { type: "string", default: "1280,320" }, reps: { type: "string", default: "3" } },
});
const B = 4096, d = 768;
const gpu = await getGpu({ quiet: true });
const rnd = (len: number) => new Float32Array(len).map(() => Math.random() - 0.5);
async function product(label: string, M: number, K: number, N: number, reps: number) {
  const x = uploadStorage(gpu, rnd(M * K), "x"), w = uploadStorage(gpu, rnd(N * K), "w");
  const zero = createStorage(gpu, K * 4, "zero"), out = createStorage(gpu, M * N * 4, "out");
  const tex = createGemmTextures(gpu, { B: M, d: K, n: N });
  const ops = textureGemmOp(gpu, tex, { bDec: zero, pre: out }, { rows: M, rowOffset: 0 });
  const pipes = await Promise.all(ops.map((o) => getPipeline(gpu, o.kernel)));
  const run = async () => {
    await gpu.device.queue.onSubmittedWorkDone();
    const t0 = performance.now();
    const enc = gpu.device.createCommandEncoder();
    encodeGemmTextureCopies(enc, tex, { xs: x, encW: w });
    encodeDispatches(gpu, enc, ops, pipes);
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await run();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) t.push(await run());
  const best = Math.min(...t);
  console.log(
    `${label}: [${M}, ${K}]·[${N}, ${K}]ᵀ ${t.map((v) => v.toFixed(0)).join(" / ")} ms, ${
      (2 * M * K * N / best / 1e6).toFixed(1)
    } GFLOP/s best`,
  );
  for (const b of [x, w, zero, out]) b.destroy();
  tex.xs.texture.destroy();
  tex.encW.texture.destroy();
}
for (const dp of values.dp.split(",").map(Number)) {
  console.log(`Dp = ${dp}`);
  const reps = Number(values.reps);
  await product("decode ê = A·W_d", B, dp, d, reps);
  await product("dpre G = U·W_dᵀ", B, d, dp, reps);
  await product("∇W_dec = Aᵀ·U (and ∇W_enc)", dp, B, d, reps);
}
