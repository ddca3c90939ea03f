import { assertClose, randn, testGpu } from "../_util.ts";
import { encodeTwin, standardizeTwin } from "./kernels_forward_twins.ts";
import { createStorage, readF32, uploadStorage } from "../../lib/gpu/buffer.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import { relative } from "node:path";
import { kernelTextureExtent, placeholderTexture } from "../../lib/gpu/texture.ts";
import { runOps } from "../../lib/sae/ops/grid.ts";
import { standardizeOp, unstandardizeOp } from "../../lib/sae/ops/standardize.ts";
import {
  CHUNK_MAX_FEATURES,
  chunkMaxLength,
  createGemmTextures,
  encodeGemmTextureCopies,
  encoderGemmOp,
  type GemmVariant,
  sgBlockOp,
  subgroupGemmSupported,
  type TextureGemmBlock,
  textureGemmBlock,
  textureGemmOp,
  textureGemmTile,
} from "../../lib/sae/ops/encoder_gemm.ts";
import {
  encoderGemmSgBlockWgsl,
  encoderGemmSgWgsl,
  encoderGemmWgsl,
} from "../../lib/sae/ops/encoder_gemm_wgsl.ts";
import { preTextureSupported } from "../../lib/sae/ops/topk.ts";
import assert from "node:assert/strict";

/** xs, encW and bDec uploaded, and xs and encW copied into the texture GEMM's textures. */
function gemmInputs(
  gpu: Gpu,
  host: { xs: Float32Array; encW: Float32Array; bDec: Float32Array },
  sizes: { B: number; d: number; n: number },
) {
  const bufs = {
    xs: uploadStorage(gpu, host.xs, "xs"),
    encW: uploadStorage(gpu, host.encW, "encW"),
    bDec: uploadStorage(gpu, host.bDec, "bDec"),
  };
  const tex = createGemmTextures(gpu, sizes);
  const encoder = gpu.device.createCommandEncoder();
  encodeGemmTextureCopies(encoder, tex, bufs);
  gpu.device.queue.submit([encoder.finish()]);
  return { bufs, tex };
}

Deno.test("kernels/encoder_gemm.wgsl and encoder_gemm_sg.wgsl are what their generator writes", async () => {
  for (
    const [file, text] of [["encoder_gemm.wgsl", encoderGemmWgsl()], [
      "encoder_gemm_sg.wgsl",
      encoderGemmSgWgsl(),
    ]]
  ) {
    const got = await Deno.readTextFile(new URL(`../../kernels/${file}`, import.meta.url));
    assert.ok(got === text, `${file} differs: re-run deno run -A lib/sae/ops/encoder_gemm_wgsl.ts`);
  }
});

Deno.test("standardize and unstandardize kernels match the TS twin (odd sizes; software and GPU workgroups)", async () => {
  const device = await testGpu();
  // Workgroups follow the adapter (lib/gpu/workgroups.ts): run both adapters' sizes.
  for (const gpu of [{ ...device, isFallback: true }, { ...device, isFallback: false }]) {
    for (const [B, d] of [[1, 48], [7, 63], [130, 100], [3, 1], [5, 700]]) {
      const x = randn(B * d, B * 31 + d).map((v, i) => 3 * v + (i % 5));
      const want = standardizeTwin(x, B, d);
      const bx = uploadStorage(gpu, x, "x");
      const xs = createStorage(gpu, B * d * 4, "xs");
      const mean = createStorage(gpu, B * 4, "mean");
      const std = createStorage(gpu, B * 4, "std");
      const back = createStorage(gpu, B * d * 4, "x back");
      await runOps(gpu, [
        ...standardizeOp(gpu, { x: bx, xs, mean, std }, { B, d }),
        ...unstandardizeOp(gpu, { xhs: xs, out: back, mean, std }, { B, d }),
      ], "standardize test");
      const tol = { atol: 1e-5, rtol: 1e-5 };
      assertClose(await readF32(gpu, mean, B), want.mean, { ...tol, label: `mean B=${B} d=${d}` });
      assertClose(await readF32(gpu, std, B), want.std, { ...tol, label: `std B=${B} d=${d}` });
      if (d > 1) {
        assertClose(await readF32(gpu, xs, B * d), want.xs, { ...tol, label: `xs B=${B} d=${d}` });
      }
      assertClose(await readF32(gpu, back, B * d), x, {
        atol: 1e-4,
        rtol: 1e-5,
        label: `x back B=${B} d=${d}`,
      });
      for (const b of [bx, xs, mean, std, back]) b.destroy();
    }
  }
});

Deno.test("encoder GEMM variants match the TS twin at awkward sizes, in row chunks", async () => {
  const gpu = await testGpu();
  const cases: [number, number, number][] = [[1, 48, 1], [37, 63, 70], [130, 48, 600], [
    65,
    5,
    129,
  ]];
  for (const [B, d, n] of cases) {
    const xs = randn(B * d, B + d + n);
    const encW = randn(n * d, 7 * n + d).map((v) => v / Math.sqrt(d));
    const bDec = randn(d, d).map((v) => 0.1 * v);
    const want = encodeTwin(xs, encW, bDec, B, d, n);
    const bufs = {
      xs: uploadStorage(gpu, xs, "xs"),
      encW: uploadStorage(gpu, encW, "encW"),
      bDec: uploadStorage(gpu, bDec, "bDec"),
    };
    const variants: GemmVariant[] = d % 4 === 0 ? ["block4", "wide", "tiled"] : ["wide", "tiled"];
    for (const variant of variants) {
      // Two chunks: rows [0, h) and [h, B), each into its own pre buffer.
      const h = Math.ceil(B / 2);
      const chunks = [[0, h], [h, B - h]].filter(([, rows]) => rows > 0);
      for (const [rowOffset, rows] of chunks) {
        const pre = createStorage(gpu, rows * n * 4, "pre");
        await runOps(
          gpu,
          encoderGemmOp(gpu, { ...bufs, pre }, { d, n, rows, rowOffset, variant }),
          "gemm",
        );
        const got = await readF32(gpu, pre, rows * n);
        assertClose(got, want.subarray(rowOffset * n, (rowOffset + rows) * n), {
          atol: 1e-4,
          rtol: 1e-4,
          label: `${variant} B=${B} d=${d} n=${n} rows ${rowOffset}+${rows}`,
        });
        pre.destroy();
      }
    }
    for (const b of Object.values(bufs)) b.destroy();
  }
});

Deno.test("texture GEMM blocks (32 × 32, 32 × 64, subgroup 16 × 64) match the TS twin (array layers in both operands, row chunks)", async () => {
  const gpu = await testGpu();
  // Software adapters take the subgroup blocks where the device has subgroups of ≥ 8 lanes, else
  // 64-wide blocks from n = 4 100 (TEX_WIDE_MIN_FEATURES) and 32-wide below; GPUs take 32.
  const soft = { ...gpu, isFallback: true };
  assert.deepEqual(
    [
      textureGemmBlock({ ...soft, subgroupSize: 0 }, 4100),
      textureGemmBlock({ ...soft, subgroupSize: 4 }, 40),
      textureGemmBlock({ ...soft, subgroupSize: 8 }, 40),
      textureGemmBlock({ ...soft, subgroupSize: 16 }, 4100),
      textureGemmBlock({ ...gpu, isFallback: false, subgroupSize: 32 }, 4100),
    ],
    [64, 32, "sg", "sg", 32],
  );
  assert.deepEqual(textureGemmTile("sg"), { rows: 256, cols: 64 });
  assert.deepEqual(textureGemmTile(64), { rows: 512, cols: 64 });
  // 64-wide and subgroup blocks are for software adapters (on an H200 the driver lost the device
  // on 64-wide ones; GPUs use gemm_tiled): elsewhere they must be refused, as must subgroup
  // blocks on a device without subgroups.
  const small = createGemmTextures(gpu, { B: 4, d: 64, n: 8 });
  const scratch = createStorage(gpu, 4 * 8 * 4, "pre");
  const sizes = { rows: 4, rowOffset: 0 };
  const bufs = { bDec: scratch, pre: scratch };
  const gpuLike = { ...gpu, isFallback: false, subgroupSize: 32 };
  for (const block of [64, "sg"] as const) {
    assert.throws(
      () => textureGemmOp(gpuLike, small, bufs, sizes, block),
      new RegExp(`${block}-wide blocks are for software adapters only`),
    );
  }
  assert.throws(
    () => textureGemmOp({ ...soft, subgroupSize: 0 }, small, bufs, sizes, "sg"),
    /"sg" blocks need subgroups of at least 8 lanes \(this device: no subgroups\)/,
  );
  small.xs.texture.destroy(), small.encW.texture.destroy(), scratch.destroy();
  // n = 4 100 spans two array layers of encW; B = 4 100 two of xs; n = 37 and 40 leave every
  // block partly out of range; rows (B − ⌊B/3⌋) are no multiple of any tile's rows.
  // n = 192 (a multiple of 64) also has pre's texture mirror written by the subgroup block.
  const shapes = [[37, 64, 4100], [4100, 64, 40], [45, 128, 37], [70, 64, 192]] as const;
  let preOutRuns = 0;
  const blocks: TextureGemmBlock[] = !gpu.isFallback
    ? [32]
    : subgroupGemmSupported(gpu)
    ? [32, 64, "sg"]
    : [32, 64];
  const cases = shapes.flatMap(([B, d, n]) => blocks.map((block) => [B, d, n, block] as const));
  for (const [B, d, n, block] of cases) {
    const xs = randn(B * d, B + n);
    const encW = randn(n * d, n + 1).map((v) => v / 8);
    const bDec = randn(d, 5).map((v) => 0.1 * v);
    const want = encodeTwin(xs, encW, bDec, B, d, n);
    const { bufs, tex } = gemmInputs(gpu, { xs, encW, bDec }, { B, d, n });
    const rowOffset = Math.floor(B / 3), rows = B - rowOffset;
    const pre = createStorage(gpu, rows * n * 4, "pre");
    await runOps(
      gpu,
      textureGemmOp(gpu, tex, { bDec: bufs.bDec, pre }, { rows, rowOffset }, block),
      "texture GEMM",
    );
    assertClose(await readF32(gpu, pre, rows * n), want.subarray(rowOffset * n), {
      atol: 1e-4,
      rtol: 1e-4,
      label: `texture ${block}-wide B=${B} d=${d} n=${n}`,
    });
    if (block === "sg") {
      // With a cmax buffer it also writes each row's maximum of every 64 features: exactly the
      // maximum of the pre it wrote (a partial last chunk at n = 37, 40 and 4 100).
      const got = await readF32(gpu, pre, rows * n);
      const nc = Math.ceil(n / CHUNK_MAX_FEATURES);
      const cmax = createStorage(gpu, chunkMaxLength(rows, n) * 4, "cmax");
      const tiny = createStorage(gpu, 16, "tiny");
      assert.throws(
        () =>
          textureGemmOp(gpu, tex, { bDec: bufs.bDec, pre, cmax: tiny }, { rows, rowOffset }, block),
        /cmax "tiny" has 16 bytes/,
      );
      tiny.destroy();
      await runOps(
        gpu,
        textureGemmOp(gpu, tex, { bDec: bufs.bDec, pre, cmax }, { rows, rowOffset }, block),
        "texture GEMM with chunk maxima",
      );
      const wantMax = new Float32Array(rows * nc).fill(-Infinity);
      got.forEach((v, e) => {
        const c = Math.floor(e / n) * nc + Math.floor((e % n) / CHUNK_MAX_FEATURES);
        wantMax[c] = Math.max(wantMax[c], v);
      });
      assert.deepEqual(await readF32(gpu, cmax, rows * nc), wantMax, `cmax B=${B} n=${n}`);
      assert.deepEqual(await readF32(gpu, pre, rows * n), got, "pre unchanged by the chunk maxima");
      if (preTextureSupported(gpu, rows, n)) {
        // preOut: the same values as texels of pre's texture mirror, and pre's buffer untouched.
        const preTex = gpu.device.createTexture({
          size: kernelTextureExtent(gpu, n / 4, rows),
          format: "rgba32float",
          usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_SRC,
        });
        const poisoned = new Float32Array(rows * n).fill(-3);
        gpu.device.queue.writeBuffer(pre, 0, poisoned);
        await runOps(
          gpu,
          textureGemmOp(gpu, tex, { bDec: bufs.bDec, pre, cmax, preOut: preTex.createView() }, {
            rows,
            rowOffset,
          }, block),
          "texture GEMM into pre's texture",
        );
        assert.deepEqual(await readF32(gpu, pre, rows * n), poisoned, "pre's buffer not written");
        const copy = createStorage(gpu, rows * n * 4, "pre texture readback");
        const enc = gpu.device.createCommandEncoder();
        enc.copyTextureToBuffer({ texture: preTex }, { buffer: copy, bytesPerRow: n * 4 }, [
          n / 4,
          rows,
        ]);
        gpu.device.queue.submit([enc.finish()]);
        assert.deepEqual(await readF32(gpu, copy, rows * n), got, `preOut B=${B} n=${n}`);
        copy.destroy(), preTex.destroy();
        preOutRuns++;
      }
      assert.throws(
        () =>
          textureGemmOp(gpu, tex, {
            bDec: bufs.bDec,
            pre,
            preOut: placeholderTexture(gpu, "sampled"),
          }, {
            rows,
            rowOffset,
          }, 32),
        /only "sg" blocks without a K limit write preOut/,
      );
      cmax.destroy();
      // The entry whose sum stops at a column count read from a buffer (u32 index 2 here): 50
      // columns of d rounded up to 52, as if xs, encW and bDec were zero past them.
      const kl = uploadStorage(gpu, new Uint32Array([7, 7, 50, 7]), "k limit");
      const cut = 52;
      const trunc = (m: Float32Array, rowsOf: number) =>
        m.map((v, i) => (i % d < cut ? v : 0)).subarray(0, rowsOf * d);
      const wantK = encodeTwin(trunc(xs, B), trunc(encW, n), trunc(bDec, 1), B, d, n);
      await runOps(
        gpu,
        textureGemmOp(
          gpu,
          tex,
          {
            bDec: bufs.bDec,
            pre,
            kLimit: { buffer: kl, at: 2 },
          },
          { rows, rowOffset },
          block,
        ),
        "texture GEMM, K limit",
      );
      assertClose(await readF32(gpu, pre, rows * n), wantK.subarray(rowOffset * n), {
        atol: 1e-4,
        rtol: 1e-4,
        label: `texture sg, K limit 50, B=${B} d=${d} n=${n}`,
      });
      kl.destroy();
    }
    for (const b of [...Object.values(bufs), pre]) b.destroy();
    tex.xs.texture.destroy(), tex.encW.texture.destroy();
  }
  assert.equal(preOutRuns, blocks.includes("sg") ? 1 : 0, "preOut checked where subgroups run");
});

Deno.test("the subgroup GEMM generated at other blocks and steps per iteration (bench/gemm_block_probe.ts) matches the TS twin", async () => {
  const gpu = await testGpu();
  assert.throws(() => encoderGemmSgBlockWgsl(16, 64, 3), /J = 3 unsupported/);
  if (!subgroupGemmSupported(gpu)) return; // the probe's blocks need subgroups of ≥ 8 lanes
  const dir = await Deno.makeTempDir({ prefix: "arbor_sg_blocks" });
  const kernelsDir = new URL("../../kernels/", import.meta.url).pathname;
  // d = 128: 32 steps of 4, so J = 2 and 4 loop over 16 and 8 iterations; B and n leave every
  // block partly out of range.
  const B = 37, d = 128, n = 50;
  const xs = randn(B * d, 3), encW = randn(n * d, 4).map((v) => v / 8);
  const bDec = randn(d, 5).map((v) => 0.1 * v);
  const want = encodeTwin(xs, encW, bDec, B, d, n);
  const { bufs, tex } = gemmInputs(gpu, { xs, encW, bDec }, { B, d, n });
  const pre = createStorage(gpu, B * n * 4, "pre");
  for (const [R, C, J] of [[2, 16, 2], [3, 8, 4], [1, 24, 1]]) {
    const path = `${dir}/sg_${R}x${C}x${J}.wgsl`;
    await Deno.writeTextFile(path, encoderGemmSgBlockWgsl(R, C, J));
    await runOps(
      gpu,
      [sgBlockOp(gpu, tex, { bDec: bufs.bDec, pre }, { file: relative(kernelsDir, path), R, C })],
      `subgroup GEMM ${R}x${C}x${J}`,
    );
    assertClose(await readF32(gpu, pre, B * n), want, {
      atol: 1e-4,
      rtol: 1e-4,
      label: `subgroup GEMM ${R} × ${C}, ${J} steps`,
    });
  }
  tex.xs.texture.destroy(), tex.encW.texture.destroy(), pre.destroy();
  for (const b of Object.values(bufs)) b.destroy();
  await Deno.remove(dir, { recursive: true });
});
