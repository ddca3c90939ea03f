/** Each GPT-2 forward kernel against its TypeScript twin (lib/lm/reference.ts) at odd sizes. */
import { assertClose, randn, rng, testGpu } from "../_util.ts";
import type { Gpu } from "../../lib/gpu/device.ts";
import { createStorage, readF32, uploadStorage } from "../../lib/gpu/buffer.ts";
import { type Dispatch, runKernels } from "../../lib/gpu/kernel.ts";
import {
  attentionDispatch,
  biasDispatch,
  crossEntropyFinishDispatch,
  crossEntropyUpdateDispatch,
  embeddingDispatch,
  geluDispatch,
  layerNormDispatch,
  matmulDispatch,
  residualDispatch,
  type Scratch,
} from "../../lib/lm/kernels.ts";
import {
  attentionRef,
  biasRef,
  crossEntropyRef,
  embeddingRef,
  geluRef,
  layerNormRef,
  matmulRef,
  residualRef,
} from "../../lib/lm/reference.ts";

async function run(gpu: Gpu, scratch: Scratch, dispatches: Dispatch[]) {
  await runKernels(gpu, dispatches, "lm kernel test");
  await gpu.device.queue.onSubmittedWorkDone();
  scratch.forEach((b) => b.destroy());
  scratch.length = 0;
}

function randInts(n: number, max: number, seed: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => Math.floor(r() * max));
}

Deno.test("lm_matmul matches matmulRef (Conv1D and transposed layouts, bias or not, odd sizes)", async () => {
  const gpu = await testGpu();
  const scratch: Scratch = [];
  for (const [M, N, K] of [[1, 1, 1], [5, 7, 3], [33, 65, 17], [70, 31, 64]]) {
    for (const transB of [false, true]) {
      for (const withBias of [true, false]) {
        const a = randn(M * K, M + N);
        const w = randn(K * N, K + 7);
        const bias = randn(N, N + 3);
        const ab = uploadStorage(gpu, a, "a");
        const wb = uploadStorage(gpu, w, "w");
        const bb = uploadStorage(gpu, bias, "bias");
        const out = createStorage(gpu, M * N * 4, "out");
        await run(gpu, scratch, [
          matmulDispatch(gpu, scratch, { a: ab, w: wb, bias: withBias ? bb : undefined, out }, {
            M,
            N,
            K,
            transB,
          }),
        ]);
        const want = matmulRef(a, w, withBias ? bias : undefined, { M, N, K, transB });
        assertClose(await readF32(gpu, out, M * N), want, {
          atol: 1e-5,
          rtol: 1e-5,
          label: `matmul ${M}x${N}x${K} transB=${transB} bias=${withBias}`,
        });
        [ab, wb, bb, out].forEach((b) => b.destroy());
      }
    }
  }
});

Deno.test("lm_matmul reads W from an element offset (vocabulary sub-range of a table chunk)", async () => {
  const gpu = await testGpu();
  const scratch: Scratch = [];
  const [M, rowsW, K, off, N] = [6, 23, 9, 5, 13];
  const a = randn(M * K, 1);
  const table = randn(rowsW * K, 2);
  const ab = uploadStorage(gpu, a, "a");
  const wb = uploadStorage(gpu, table, "table");
  const out = createStorage(gpu, M * N * 4, "out");
  await run(gpu, scratch, [
    matmulDispatch(gpu, scratch, { a: ab, w: wb, out }, {
      M,
      N,
      K,
      transB: true,
      bOffset: off * K,
    }),
  ]);
  const want = matmulRef(a, table.subarray(off * K, (off + N) * K), undefined, {
    M,
    N,
    K,
    transB: true,
  });
  assertClose(await readF32(gpu, out, M * N), want, { atol: 1e-5, rtol: 1e-5, label: "offset" });
  [ab, wb, out].forEach((b) => b.destroy());
});

Deno.test("lm_layernorm matches layerNormRef (d below, at and above the workgroup size)", async () => {
  const gpu = await testGpu();
  const scratch: Scratch = [];
  for (const [rows, d] of [[1, 1], [3, 17], [7, 64], [5, 131]]) {
    const x = randn(rows * d, rows * 31 + d).map((v, i) => v * 3 + (i % 5));
    const gamma = randn(d, d + 1);
    const beta = randn(d, d + 2);
    const bufs = [x, gamma, beta].map((a) => uploadStorage(gpu, a, "ln in"));
    const y = createStorage(gpu, x.byteLength, "y");
    await run(gpu, scratch, [
      layerNormDispatch(gpu, scratch, { x: bufs[0], gamma: bufs[1], beta: bufs[2], y }, {
        rows,
        d,
        eps: 1e-5,
      }),
    ]);
    assertClose(await readF32(gpu, y, rows * d), layerNormRef(x, gamma, beta, d, 1e-5), {
      atol: 1e-5,
      rtol: 1e-5,
      label: `layernorm ${rows}x${d}`,
    });
    [...bufs, y].forEach((b) => b.destroy());
  }
});

Deno.test("lm_embedding matches embeddingRef, also with the table split into vocabulary chunks", async () => {
  const gpu = await testGpu();
  const scratch: Scratch = [];
  const [V, P, d, rows] = [37, 11, 13, 29];
  const wte = randn(V * d, 1);
  const wpe = randn(P * d, 2);
  const tok = randInts(rows, V, 3);
  const pos = randInts(rows, P, 4);
  const want = embeddingRef(tok, pos, wte, wpe, d);
  for (const chunk of [V, 10]) {
    const tb = uploadStorage(gpu, tok, "tok");
    const pb = uploadStorage(gpu, pos, "pos");
    const wpeb = uploadStorage(gpu, wpe, "wpe");
    const x = createStorage(gpu, rows * d * 4, "x");
    const chunks: GPUBuffer[] = [];
    const dispatches: Dispatch[] = [];
    for (let start = 0; start < V; start += chunk) {
      const count = Math.min(chunk, V - start);
      const wb = uploadStorage(gpu, wte.subarray(start * d, (start + count) * d), "wte chunk");
      chunks.push(wb);
      dispatches.push(
        embeddingDispatch(gpu, scratch, { tok: tb, pos: pb, wte: wb, wpe: wpeb, x }, {
          rows,
          d,
          vocabStart: start,
          vocabCount: count,
        }),
      );
    }
    await run(gpu, scratch, dispatches);
    assertClose(await readF32(gpu, x, rows * d), want, {
      atol: 0,
      rtol: 0,
      label: `chunk ${chunk}`,
    });
    [tb, pb, wpeb, x, ...chunks].forEach((b) => b.destroy());
  }
});

Deno.test("lm_attention matches attentionRef (several sequences, odd head widths)", async () => {
  const gpu = await testGpu();
  const scratch: Scratch = [];
  for (
    const [seqs, seq, nHead, headDim] of [[1, 1, 1, 1], [2, 7, 3, 5], [3, 13, 4, 16], [
      1,
      70,
      2,
      64,
    ]]
  ) {
    const rows = seqs * seq;
    const d = nHead * headDim;
    const qkv = randn(rows * 3 * d, rows + d).map((v) => v * 2);
    const qb = uploadStorage(gpu, qkv, "qkv");
    const out = createStorage(gpu, rows * d * 4, "att");
    await run(gpu, scratch, [
      attentionDispatch(gpu, scratch, { qkv: qb, out }, { rows, seq, nHead, headDim }),
    ]);
    assertClose(
      await readF32(gpu, out, rows * d),
      attentionRef(qkv, { rows, seq, nHead, headDim }),
      {
        atol: 1e-5,
        rtol: 1e-4,
        label: `attention ${seqs}x${seq} h=${nHead} hd=${headDim}`,
      },
    );
    [qb, out].forEach((b) => b.destroy());
  }
});

Deno.test("lm_gelu and lm_residual match their twins (odd lengths, large inputs stay finite)", async () => {
  const gpu = await testGpu();
  const scratch: Scratch = [];
  for (const n of [1, 255, 257, 1001]) {
    const x = randn(n, n).map((v, i) => (i === 0 ? 200 : i === 1 ? -200 : v * 4));
    const y = randn(n, n + 1);
    const xb = uploadStorage(gpu, x, "x");
    const yb = uploadStorage(gpu, y, "y");
    await run(gpu, scratch, [geluDispatch(gpu, scratch, xb, n)]);
    const g = geluRef(x);
    assertClose(await readF32(gpu, xb, n), g, { atol: 1e-5, rtol: 1e-5, label: `gelu n=${n}` });
    await run(gpu, scratch, [residualDispatch(gpu, scratch, { x: xb, y: yb }, n)]);
    assertClose(await readF32(gpu, xb, n), residualRef(g, y), {
      atol: 1e-5,
      rtol: 1e-5,
      label: `residual n=${n}`,
    });
    [xb, yb].forEach((b) => b.destroy());
  }
});

Deno.test("lm_cross_entropy over vocabulary chunks matches crossEntropyRef", async () => {
  const gpu = await testGpu();
  const scratch: Scratch = [];
  const [rows, V] = [9, 301];
  const logits = randn(rows * V, 5).map((v) => v * 6);
  const target = randInts(rows, V, 6);
  const want = crossEntropyRef(logits, target, V);
  for (const chunk of [V, 64, 1]) {
    const tb = uploadStorage(gpu, target, "target");
    const state = createStorage(gpu, rows * 3 * 4, "state");
    const nll = createStorage(gpu, rows * 2 * 4, "nll");
    const parts: GPUBuffer[] = [];
    const dispatches: Dispatch[] = [];
    for (let start = 0; start < V; start += chunk) {
      const count = Math.min(chunk, V - start);
      const part = new Float32Array(rows * count);
      for (let r = 0; r < rows; r++) {
        part.set(logits.subarray(r * V + start, r * V + start + count), r * count);
      }
      const pb = uploadStorage(gpu, part, "logits chunk");
      parts.push(pb);
      dispatches.push(
        crossEntropyUpdateDispatch(gpu, scratch, { logits: pb, target: tb, state }, {
          rows,
          count,
          start,
          init: start === 0,
        }),
      );
    }
    dispatches.push(crossEntropyFinishDispatch(gpu, scratch, { state, nll }, rows));
    await run(gpu, scratch, dispatches);
    const got = await readF32(gpu, nll, rows * 2);
    assertClose(got.filter((_, i) => i % 2 === 0), want.logsumexp, {
      atol: 1e-4,
      rtol: 1e-5,
      label: `lse chunk ${chunk}`,
    });
    assertClose(got.filter((_, i) => i % 2 === 1), want.nll, {
      atol: 1e-4,
      rtol: 1e-5,
      label: `nll chunk ${chunk}`,
    });
    [tb, state, nll, ...parts].forEach((b) => b.destroy());
  }
});

Deno.test("lm_bias matches biasRef (odd shapes)", async () => {
  const gpu = await testGpu();
  const scratch: Scratch = [];
  for (const [rows, cols] of [[1, 1], [3, 7], [37, 65]]) {
    const x = randn(rows * cols, rows);
    const bias = randn(cols, cols);
    const xb = uploadStorage(gpu, x, "x");
    const bb = uploadStorage(gpu, bias, "bias");
    await run(gpu, scratch, [biasDispatch(gpu, scratch, { x: xb, bias: bb }, { rows, cols })]);
    assertClose(await readF32(gpu, xb, rows * cols), biasRef(x, bias), {
      atol: 0,
      rtol: 0,
      label: `bias ${rows}x${cols}`,
    });
    [xb, bb].forEach((b) => b.destroy());
  }
});
