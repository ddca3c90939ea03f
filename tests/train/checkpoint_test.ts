/** Tests of checkpoints in the reference layout (lib/train/checkpoint.ts). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { randn } from "../_util.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import {
  type Checkpoint,
  loadCheckpoint,
  loadSae,
  saveCheckpoint,
} from "../../lib/train/checkpoint.ts";
import { readSafetensors, writeSafetensors } from "../../lib/format/safetensors.ts";
import { freshProgress } from "../../lib/train/trainer.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "arbor_ckpt_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A trained 3-layer tree checkpoint with trainer progress and hook state. */
async function treeCheckpoint(): Promise<Checkpoint> {
  const config = makeConfig({
    arch: "tree",
    dIn: 5,
    layers: [3, 4, 6],
    kPerLayer: [2, 1, 1],
    deadTokens: 8,
    seed: 4,
  });
  const eng = new ReferenceEngine(config);
  for (let i = 0; i < 3; i++) await eng.step(randn(8 * 5, i), 8);
  const progress = freshProgress(8, 80, 1234);
  progress.tokensSeen = 24;
  progress.cursor = { format: "arbor-array-cursor", epoch: 0, row: 24 };
  progress.hooks = { tree: { next: 30 } };
  progress.hookTensors = { "tree.capacity": Float32Array.from([1, 2.5]) };
  return { config, state: await eng.readState(), progress };
}

Deno.test("checkpoint round trip: model, optimiser, counters, tree, progress are bit-identical", async () => {
  await withDir(async (dir) => {
    const ck = await treeCheckpoint();
    await saveCheckpoint(dir, ck, { hook_name: "blocks.8.hook_resid_post" });
    const back = await loadCheckpoint(dir);
    assert.deepEqual(back.config, ck.config);
    assert.deepEqual(back.state, ck.state);
    assert.deepEqual(back.progress, ck.progress);
    const model = await loadSae(dir); // model only: exact dead counters, zero moments
    assert.deepEqual(model.state.tokensSinceFired, ck.state.tokensSinceFired);
    assert.deepEqual(model.state.decW, ck.state.decW);
    assert.ok(model.state.adam.encW.m.every((v) => v === 0));
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "config.json",
      "sae.safetensors",
      "trainer_state.json",
      "trainer_state.safetensors",
    ]);
  });
});

Deno.test("sae.safetensors and config.json follow the reference layout", async () => {
  await withDir(async (dir) => {
    const ck = await treeCheckpoint();
    await saveCheckpoint(dir, ck);
    const st = await readSafetensors(join(dir, "sae.safetensors"));
    const n = 13, d = 5;
    assert.deepEqual(st.info("encoder.weight").shape, [n, d]);
    assert.deepEqual(st.info("decoder.weight").shape, [d, n]);
    const dec = st.f32("decoder.weight");
    for (let f = 0; f < n; f++) {
      for (let j = 0; j < d; j++) assert.equal(dec[j * n + f], ck.state.decW[f * d + j]);
    }
    assert.equal(st.info("parent_index_1").dtype, "I64");
    assert.deepEqual(st.i32("parent_index_2"), ck.state.parents[2]);
    assert.ok(!st.has("parent_index_0"));
    assert.equal(st.info("steps_since_fired").dtype, "I64");
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    assert.equal(cfg.type, "tree");
    assert.equal(cfg.d_in, 5);
    assert.deepEqual(cfg.features_per_layer, [3, 4, 6]);
    assert.deepEqual(cfg.k_per_layer, [2, 1, 1]);
    assert.deepEqual(cfg.aux_layers, [0]);
    assert.equal(cfg.auxk, 256);
  });
});

/** A reference-style folder (no Arbor metadata), with parents stored as int64. */
async function writeReferenceFolder(
  dir: string,
  cfg: Record<string, unknown>,
  parents: Record<string, number[]>,
  n = 7,
  d = 3,
) {
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(cfg));
  const tensors: Parameters<typeof writeSafetensors>[1] = {
    "encoder.weight": { shape: [n, d], data: randn(n * d, 1) },
    "decoder.weight": { shape: [d, n], data: randn(n * d, 2) },
    b_dec: { shape: [d], data: new Float32Array(d) },
    steps_since_fired: { shape: [n], data: new BigInt64Array(n).fill(5n) },
  };
  for (const [k, v] of Object.entries(parents)) {
    tensors[k] = { shape: [v.length], data: Int32Array.from(v), dtype: "I64" };
  }
  await writeSafetensors(join(dir, "sae.safetensors"), tensors);
}

const REF_TREE = {
  type: "tree",
  d_in: 3,
  hook_name: "blocks.8.hook_resid_post",
  dead_steps_threshold: 100,
  features_per_layer: [2, 5],
  k_per_layer: [1, 2],
  auxk: 256,
  aux_layers: [0],
};

Deno.test("loadSae reads a reference-style Tree SAE folder", async () => {
  await withDir(async (dir) => {
    await writeReferenceFolder(dir, REF_TREE, { parent_index_1: [0, 1, 2, 2, 0] });
    const { config, state } = await loadSae(dir, 10);
    assert.equal(config.arch, "tree");
    assert.deepEqual(config.layers, [2, 5]);
    assert.deepEqual(config.kPerLayer, [1, 2]);
    assert.deepEqual(config.auxAlpha, [1 / 32, 0]);
    assert.deepEqual(Array.from(state.parents[1]), [0, 1, 2, 2, 0]);
    assert.deepEqual(Array.from(state.parents[0]), [0, 0]);
    assert.equal(state.tokensSinceFired[0], 50);
  });
});

Deno.test("loading rejects bad trees, k_l > s_l, sizes that do not sum to n, wrong d_in", async () => {
  await withDir(async (dir) => {
    await writeReferenceFolder(dir, REF_TREE, { parent_index_1: [0, 1, 2, 5, 0] });
    await assert.rejects(() => loadSae(dir), /parent_index_1\[3\] = 5 .*points at its own layer/);
    await writeReferenceFolder(dir, REF_TREE, { parent_index_1: [0, 1, 2, 99, 0] });
    await assert.rejects(
      () => loadSae(dir),
      /sae\.safetensors: parent_index_1\[3\] = 99 .*out of range/,
    );
    await writeReferenceFolder(dir, REF_TREE, {});
    await assert.rejects(() => loadSae(dir), /missing tensor parent_index_1/);
    await writeReferenceFolder(dir, { ...REF_TREE, k_per_layer: [1, 6] }, {
      parent_index_1: [0, 0, 0, 0, 0],
    });
    await assert.rejects(
      () => loadSae(dir),
      /config\.json: kPerLayer\[1\] = 6 exceeds the 5 features of layer 1/,
    );
    await writeReferenceFolder(dir, { ...REF_TREE, d_sae: 8 }, { parent_index_1: [0, 0, 0, 0, 0] });
    await assert.rejects(() => loadSae(dir), /features_per_layer sums to 7 but d_sae = 8/);
    await writeReferenceFolder(dir, { ...REF_TREE, features_per_layer: [2, 6] }, {
      parent_index_1: [0, 0, 0, 0, 0],
    });
    await assert.rejects(() => loadSae(dir), /encoder\.weight has shape \[7,3\], expected \[8,3\]/);
    await writeReferenceFolder(dir, { ...REF_TREE, d_in: 4 }, { parent_index_1: [0, 0, 0, 0, 0] });
    await assert.rejects(
      () => loadSae(dir),
      /encoder\.weight has shape \[7,3\], expected \[7,4\] \(config\.json: d_in = 4/,
    );
  });
});

Deno.test("loadCheckpoint refuses files from different steps and missing trainer state", async () => {
  await withDir(async (dir) => {
    const ck = await treeCheckpoint();
    await saveCheckpoint(dir, ck);
    const tj = JSON.parse(await Deno.readTextFile(join(dir, "trainer_state.json")));
    tj.step = 7;
    await Deno.writeTextFile(join(dir, "trainer_state.json"), JSON.stringify(tj));
    await assert.rejects(
      () => loadCheckpoint(dir),
      /written at step 3 but trainer_state\.json is at step 7/,
    );
    await Deno.remove(join(dir, "trainer_state.json"));
    await assert.rejects(() => loadCheckpoint(dir), /trainer_state\.json: file not found/);
  });
});

Deno.test("a failed save leaves the previous checkpoint intact and no temporary files", async () => {
  await withDir(async (dir) => {
    const ck = await treeCheckpoint();
    await saveCheckpoint(dir, ck);
    const before = await Deno.readFile(join(dir, "sae.safetensors"));
    const later: Checkpoint = { ...ck, state: { ...ck.state, step: 9 } };
    // a non-empty folder where the last staged file must go: its write fails after the others were staged
    const blocker = join(dir, "trainer_state.json.tmp");
    await Deno.mkdir(blocker);
    await Deno.writeTextFile(join(blocker, "x"), "x");
    await assert.rejects(() => saveCheckpoint(dir, later));
    await Deno.remove(blocker, { recursive: true });
    assert.deepEqual(await Deno.readFile(join(dir, "sae.safetensors")), before);
    assert.equal((await loadCheckpoint(dir)).state.step, 3);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.ok(names.every((n) => !n.includes(".tmp")), `leftover temp files: ${names}`);
  });
});
