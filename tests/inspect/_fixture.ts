/**
 * Small runs for the inspect tests: a synthetic dataset (with truth.json) and a Tree SAE
 * trained on it for a few steps with the reference engine (metrics.jsonl included), and a
 * text dataset whose provenance names the tiny GPT-2 fixture, so tokens decode to text.
 */
import { join } from "node:path";
import { makeConfig, type SaeConfig } from "../../lib/sae/config.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { initState } from "../../lib/sae/engine.ts";
import { storeSource } from "../../lib/train/batch_source.ts";
import { freshProgress, train } from "../../lib/train/trainer.ts";
import { saveCheckpoint } from "../../lib/train/checkpoint.ts";
import { writeSynthDataset } from "../../lib/synth/dataset.ts";
import { parseTree, treeFromParams } from "../../lib/synth/tree.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { loadTokenizer } from "../../lib/lm/tokenizer.ts";
import { randn } from "../_util.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
/** The tiny GPT-2 fixture (real GPT-2 tokenizer). */
export const TINY_MODEL = join(ROOT, "fixtures/tiny-gpt2");

/** Width of the fixtures' activations. */
export const D = 16;
/** Tree SAE of the synthetic run: 4 + 8 features, one active per layer. */
export const TREE_CONFIG: SaeConfig = makeConfig({
  arch: "tree",
  dIn: D,
  layers: [4, 8],
  kPerLayer: [1, 1],
  lr: 3e-3,
  auxK: 4,
  deadTokens: 2048,
});

/** Run a test body in a fresh temporary folder, removed afterwards. */
export async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "arbor-inspect-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A synthetic dataset (3 top-level features with 2 exclusive children each) in `dir`/syn. */
export async function synthDataset(dir: string, tokens = 4096): Promise<string> {
  const data = join(dir, "syn");
  await writeSynthDataset(data, {
    tree: parseTree(
      treeFromParams({
        branching: [3, 2],
        topMass: 1.2,
        childMass: 0.9,
        zipf: 0.5,
        exclusive: true,
        binary: false,
      }),
    ),
    params: {
      dIn: D,
      tokens,
      noise: 0.02,
      magnitudeStd: 0.15,
      epsilon: 0.2,
      siblingEpsilon: 0.1,
      seed: 3,
    },
  });
  return data;
}

/** Train TREE_CONFIG for `steps` batches of 256 on `data`; checkpoint + metrics.jsonl in `out`. */
export async function trainRun(data: string, out: string, steps = 12): Promise<void> {
  const B = 256;
  await train({
    engine: new ReferenceEngine(TREE_CONFIG),
    source: await storeSource(data, { batchSize: B, seed: 0, expectDIn: D }),
    outDir: out,
    batchSize: B,
    maxTokens: steps * B,
    logEvery: 2,
    checkpointEvery: 0,
    progressSink: null,
    info: { data },
  });
}

/** A text dataset of `rows` tokens (random activations) from the tiny model's tokenizer, in windows of `context`. */
export async function textDataset(
  dir: string,
  context = 16,
): Promise<{ data: string; ids: number[] }> {
  const data = join(dir, "text");
  const tok = await loadTokenizer(TINY_MODEL);
  const text = "The quick brown fox jumps over the lazy dog. A tree splits into branches, " +
    "and every branch into twigs; the leaves of a twig are its finest parts. ";
  const ids = [tok.eosTokenId, ...tok.encode(text.repeat(4))];
  const rows = ids.length;
  const w = await ActivationWriter.create(data, {
    dIn: D,
    dtype: "f32",
    tokens: true,
    provenance: { model: TINY_MODEL, hook: "resid_post.0", context },
  });
  await w.append(randn(rows * D, 11), {
    tokenIds: Uint32Array.from(ids),
    docIds: new Uint32Array(rows),
    positions: Uint32Array.from({ length: rows }, (_, i) => i % context),
  });
  await w.close();
  return { data, ids };
}

/** An untrained (seeded init) tree SAE checkpoint in `out` recording `data` as its dataset. */
export async function handCheckpoint(out: string, data: string): Promise<void> {
  await saveCheckpoint(out, {
    config: TREE_CONFIG,
    state: initState(TREE_CONFIG),
    progress: freshProgress(256, 256),
  }, { data });
}
