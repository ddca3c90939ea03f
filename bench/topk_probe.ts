/**
 * The main top-k (kernels/topk.wgsl select_topk) alone at the shape (n = 24 576, k = 32),
 * as the step runs it on software adapters: from the encoder GEMM's chunk maxima (CMAX_IN), pre
 * read through its texture mirror (as when AuxK runs). The chunk maxima are made on the host.
 * With `tree`: the Tree SAE's gated per-layer top-k instead (preset tree-4layer-l0-32: layers
 * [1536, 3072, 9216, 10752], k [21, 5, 4, 2], the balanced initial tree), from pre's texture, the
 * parents from their texture mirror (`storage`: from their buffer), the first layer from the chunk
 * maxima and the layers after it from the child lists (`scan`: by a pass over each layer), as the
 * engine runs it.
 *
 *   deno run -A bench/topk_probe.ts [rows=1024] [tree [storage] [scan]]
 *
 * Prints the wall time of four runs (the first includes warm-up).
 */
import { helpFromHeader } from "./_help.ts";
import { randomPre, uploadPreWithTexture } from "./_probe.ts";
import { getGpu } from "../lib/gpu/device.ts";
import { createStorage, uploadStorage } from "../lib/gpu/buffer.ts";
import { encodeDispatches, getPipeline } from "../lib/gpu/kernel.ts";
import { timeGpu } from "../lib/gpu/timer.ts";
import {
  childLists,
  createLayerTable,
  createParentsTexture,
  selectTopKOp,
  writeParentsTexture,
} from "../lib/sae/ops/topk.ts";
import { initParents } from "../lib/sae/reference/init.ts";
import { Rng } from "../lib/util/rng.ts";

await helpFromHeader(import.meta.url);
const gpu = await getGpu();
const rows = Number(Deno.args[0] ?? 1024);
const tree = Deno.args[1] === "tree";
/** Features and active slots of the benchmark shape; features per chunk maximum. */
const n = 24576, k = 32, chunk = 64;
const pre = randomPre(rows, n);
const nc = n / chunk;
const cmax = new Float32Array(rows * nc).fill(-Infinity);
for (let r = 0; r < rows; r++) {
  for (let i = 0; i < n; i++) {
    const c = r * nc + Math.floor(i / chunk);
    cmax[c] = Math.max(cmax[c], pre[r * n + i]);
  }
}
const { preBuf, tex } = uploadPreWithTexture(gpu, pre, rows, n);
/** The Tree SAE preset tree-4layer-l0-32 (lib/tree/presets.ts). */
const treeSizes = [1536, 3072, 9216, 10752], treeK = [21, 5, 4, 2];
const layout = tree
  ? { sizes: treeSizes, kPerLayer: treeK, gated: true }
  : { sizes: [n], kPerLayer: [k], gated: false };
const parents = tree ? initParents(treeSizes, new Rng(1)) : [];
const flat = new Int32Array(n);
parents.reduce((o, p) => (flat.set(p, o), o + p.length), 0);
// The parents' texture mirror, as the engine keeps on software adapters (`storage`: without it).
const parentsTex = tree && !Deno.args.includes("storage")
  ? createParentsTexture(gpu, n)
  : undefined;
if (parentsTex) writeParentsTexture(gpu, parentsTex, flat);
const bufs = {
  pre: preBuf,
  preTex: tex,
  // The tree's first layer, whole chunks, starts from them as well (`scan`: a pass over it).
  ...(tree && Deno.args.includes("scan") ? {} : { cmax: uploadStorage(gpu, cmax, "cmax") }),
  ...(tree
    ? {
      parents: uploadStorage(gpu, flat, "parents"),
      ...(parentsTex ? { parentsTex } : {}),
      ...(Deno.args.includes("scan")
        ? {}
        : { children: uploadStorage(gpu, childLists(flat), "children") }),
    }
    : {}),
  layerTable: createLayerTable(gpu, layout),
  idx: createStorage(gpu, rows * k * 4, "idx"),
  val: createStorage(gpu, rows * k * 4, "val"),
};
const ops = selectTopKOp(gpu, bufs, layout, { n, rows, rowOffset: 0 });
const pipes = await Promise.all(ops.map((d) => getPipeline(gpu, d.kernel)));
for (let r = 0; r < 4; r++) {
  const ms = await timeGpu(gpu, (e) => encodeDispatches(gpu, e, ops, pipes));
  console.log(`select_topk${tree ? " (tree)" : ""} ${rows} rows: ${ms.toFixed(1)} ms`);
}
