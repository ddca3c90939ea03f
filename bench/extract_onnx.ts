/**
 * The tiny GPT-2 fixture's forward pass, ours (WGSL on WebGPU) against transformers.js on
 * onnxruntime-node (CPU), recorded in bench/README.md under "## Extract".
 *
 *   deno run -A bench/extract_onnx.ts [--windows 8] [--reps 3] [--onnx DIR]
 *
 * 1. The ONNX model: `--onnx DIR` (a transformers.js model folder with onnx/model.onnx), else
 *    .cache/tiny-gpt2-onnx, written once by fixtures/tiny-gpt2/export_onnx.py (needs
 *    /usr/bin/python3 with python3-torch and python3-onnx; ~13 MB, so not committed).
 * 2. Check first: onnxruntime's logits for "Hello world" against the fixture's independent
 *    PyTorch reference (reference.safetensors, p0.logits_cols), then onnxruntime's logits
 *    against ours on the timed windows (max abs diff). Timing only starts when both agree.
 * 3. Time: `windows` × 128-token windows (the ids of bench/extract.ts) through each engine,
 *    full logits [windows·128, 50257] f32 in host memory at the end; median of `reps` after a
 *    warm-up, as tokens/s.
 */
import { helpFromHeader } from "./_help.ts";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { getGpu } from "../lib/gpu/device.ts";
import { loadGpt2Model } from "../lib/lm/load.ts";
import { readSafetensors } from "../lib/format/safetensors.ts";

await helpFromHeader(import.meta.url);

const ROOT = new URL("../", import.meta.url).pathname;
const FIXTURE = join(ROOT, "fixtures/tiny-gpt2");
const CONTEXT = 128;
/** Logit agreement required before timing: both are f32 passes over the same f32 weights. */
const LOGIT_ATOL = 1e-3;
/** Columns of reference.safetensors' logits_cols (make_fixture.py: LOGIT_COLS). */
const VOCAB = 50257;
const LOGIT_COLS = [...Array.from({ length: Math.ceil(VOCAB / 97) }, (_, i) => i * 97), VOCAB - 1];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    windows: { type: "string", default: "8" },
    reps: { type: "string", default: "3" },
    onnx: { type: "string" },
  },
});
const windows = Number(values.windows);
const reps = Number(values.reps);

/** The ONNX model folder, exported into the cache on first use. */
async function onnxFolder(): Promise<string> {
  if (values.onnx) return values.onnx;
  const dir = join(ROOT, ".cache/tiny-gpt2-onnx");
  try {
    await Deno.stat(join(dir, "onnx/model.onnx"));
    return dir;
  } catch {
    // not exported yet
  }
  const script = join(FIXTURE, "export_onnx.py");
  const r = await new Deno.Command("/usr/bin/python3", {
    args: [script, FIXTURE, dir],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!r.success) {
    throw new Error(
      `${script} failed (exit ${r.code}); it needs /usr/bin/python3 with python3-torch and ` +
        "python3-onnx (apt-get install -y python3-torch python3-onnx), or pass --onnx DIR",
    );
  }
  return dir;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function median(run: () => Promise<unknown>): Promise<number> {
  await run();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await run();
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

const dir = await onnxFolder();
const { AutoModelForCausalLM, env, Tensor } = await import("@huggingface/transformers");
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = "";
const ort = await AutoModelForCausalLM.from_pretrained(dir, { dtype: "fp32", device: "cpu" });

/** onnxruntime logits [B·T, V] of B windows of T tokens. */
async function ortLogits(ids: number[], B: number): Promise<Float32Array> {
  const T = ids.length / B;
  const input_ids = new Tensor("int64", BigInt64Array.from(ids, BigInt), [B, T]);
  const attention_mask = new Tensor("int64", new BigInt64Array(B * T).fill(1n), [B, T]);
  const out = await ort({ input_ids, attention_mask });
  return out.logits.data as Float32Array;
}

// --- Check: onnxruntime against the independent PyTorch reference ---
const refs = await readSafetensors(join(FIXTURE, "reference.safetensors"));
const hello = await ortLogits([15496, 995], 1);
const picked = new Float32Array(2 * LOGIT_COLS.length);
for (let t = 0; t < 2; t++) {
  LOGIT_COLS.forEach((c, j) => picked[t * LOGIT_COLS.length + j] = hello[t * VOCAB + c]);
}
const refDiff = maxAbsDiff(picked, refs.f32("p0.logits_cols"));
console.log(
  `onnxruntime vs PyTorch reference ("Hello world", ${LOGIT_COLS.length} cols): max |Δ| = ${
    refDiff.toExponential(2)
  }`,
);

// --- Check: onnxruntime against ours on the timed windows ---
const gpu = await getGpu();
const ours = await loadGpt2Model(gpu, FIXTURE);
const n = windows * CONTEXT;
const ids = Array.from({ length: n }, (_, i) => (i * 7919) % ours.config.vocabSize);
const ourRun = async () =>
  (await ours.forward({ tokens: ids, seq: CONTEXT, logits: true })).logits!;
const diff = maxAbsDiff(await ourRun(), await ortLogits(ids, windows));
console.log(
  `WebGPU vs onnxruntime (${windows}×${CONTEXT} tokens, all logits): max |Δ| = ${
    diff.toExponential(2)
  }`,
);
if (!(diff < LOGIT_ATOL && refDiff < LOGIT_ATOL)) {
  throw new Error(`logits disagree (tolerance ${LOGIT_ATOL}); not timing`);
}
console.log("All results match. Starting benchmarks.");

// --- Time ---
for (
  const [label, run] of [
    ["transformers.js + onnxruntime-node (CPU)", () => ortLogits(ids, windows)],
    ["Arbor WebGPU forward", ourRun],
  ] as const
) {
  const s = await median(run);
  console.log(
    `${label}: ${(n / s).toFixed(0)} tok/s (${
      (s * 1000).toFixed(0)
    } ms per ${windows}×${CONTEXT} batch, logits to host)`,
  );
}
ours.destroy();
