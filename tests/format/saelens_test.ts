/** Tests of the SAELens export/import (lib/format/saelens.ts, lib/format/convert.ts). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertClose, randn } from "../_util.ts";
import { makeConfig, numFeatures, type SaeConfig } from "../../lib/sae/config.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import type { SaeState } from "../../lib/sae/engine.ts";
import { loadCheckpoint, saveCheckpoint } from "../../lib/train/checkpoint.ts";
import { freshProgress } from "../../lib/train/trainer.ts";
import { readSafetensors, writeSafetensors } from "../../lib/format/safetensors.ts";
import { exportCheckpoint, importCheckpoint, readForeign } from "../../lib/format/convert.ts";
import { ForeignEngine } from "../../lib/format/foreign_engine.ts";
import { exportSaelens, readSaelens } from "../../lib/format/saelens.ts";
import { makeMpConfig, MpEngine } from "../../lib/sae/mp/engine.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "arbor_saelens_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const D = 12;
const CONFIGS: SaeConfig[] = [
  makeConfig({ arch: "topk", dIn: D, layers: [20], k: 3, lr: 1e-2, seed: 1 }),
  makeConfig({ arch: "batchtopk", dIn: D, layers: [20], k: 3, lr: 1e-2, seed: 2 }),
  makeConfig({ arch: "matryoshka", dIn: D, layers: [6, 14], k: 3, lr: 1e-2, seed: 3 }),
  makeConfig({ arch: "tree", dIn: D, layers: [4, 7, 9], kPerLayer: [2, 1, 1], lr: 1e-2, seed: 4 }),
];

/** A few training steps so every parameter (and θ for batchtopk) is non-trivial. */
async function trained(config: SaeConfig): Promise<SaeState> {
  const eng = new ReferenceEngine(config);
  for (let i = 0; i < 3; i++) await eng.step(randn(16 * D, 10 + i), 16);
  return eng.readState();
}

async function saveTrained(dir: string, config: SaeConfig): Promise<SaeState> {
  const state = await trained(config);
  await saveCheckpoint(dir, { config, state, progress: freshProgress(16, 48, 0) }, {
    hook_name: "blocks.5.hook_resid_pre",
  });
  return state;
}

/**
 * The documented formula (README.md / cfg.json "arbor.reconstruction"), written from the
 * exported files alone with plain loops — independent of Arbor's engine code.
 */
async function documentedFormula(dir: string, x: Float32Array, B: number): Promise<Float32Array> {
  const cfg = JSON.parse(await Deno.readTextFile(join(dir, "cfg.json")));
  const st = await readSafetensors(join(dir, "sae_weights.safetensors"));
  const d: number = cfg.d_in, n: number = cfg.d_sae;
  const wEnc = st.f32("W_enc"), wDec = st.f32("W_dec"), bEnc = st.f32("b_enc");
  const bDec = st.f32("b_dec");
  const a = cfg.arbor.config;
  const tree = a.arch === "tree"
    ? JSON.parse(await Deno.readTextFile(join(dir, "tree.json")))
    : null;
  const out = new Float32Array(B * d);
  for (let b = 0; b < B; b++) {
    const row = Array.from(x.subarray(b * d, (b + 1) * d));
    const mu = row.reduce((s, v) => s + v, 0) / d;
    const sigma = Math.sqrt(row.reduce((s, v) => s + (v - mu) ** 2, 0) / d);
    const xs = row.map((v) => (v - mu) / (sigma + 1e-5));
    const pre = new Array(n).fill(0).map((_, i) => {
      let s = bEnc[i];
      for (let j = 0; j < d; j++) s += (xs[j] - bDec[j]) * wEnc[j * n + i];
      return s;
    });
    const f = new Array(n).fill(0);
    const topOf = (ids: number[], score: (i: number) => number, k: number) =>
      [...ids].sort((p, q) => score(q) - score(p) || p - q).slice(0, k);
    const range = (s: number, e: number) => Array.from({ length: e - s }, (_, i) => s + i);
    if (a.arch === "tree") {
      let o = 0;
      tree.features_per_layer.forEach((size: number, l: number) => {
        const gate = (i: number) => {
          const p = tree.parents[l][i - o];
          return p === o || f[p] > 1e-3 ? pre[i] : 0;
        };
        for (const i of topOf(range(o, o + size), gate, tree.k_per_layer[l])) {
          f[i] = Math.max(gate(i), 0);
        }
        o += size;
      });
    } else if (cfg.architecture === "jumprelu") {
      const th = st.f32("threshold");
      const over = range(0, n).filter((i) => pre[i] > th[i]);
      for (const i of topOf(over, (i) => pre[i], Math.min(n, 4 * a.k))) f[i] = pre[i];
    } else {
      for (const i of topOf(range(0, n), (i) => pre[i], cfg.k)) f[i] = Math.max(pre[i], 0);
    }
    for (let j = 0; j < d; j++) {
      let s = bDec[j];
      for (let i = 0; i < n; i++) s += f[i] * wDec[i * d + j];
      out[b * d + j] = s * (sigma + 1e-5) + mu;
    }
  }
  return out;
}

for (const config of CONFIGS) {
  Deno.test(`SAELens export → import is exact for ${config.arch} (codes and reconstructions)`, async () => {
    await withDir(async (root) => {
      const ckpt = join(root, "ckpt"), exp = join(root, "exp"), back = join(root, "back");
      const state = await saveTrained(ckpt, config);
      const files = await exportCheckpoint(ckpt, "saelens", exp);
      assert.deepEqual(
        files.map((f) => f.slice(exp.length + 1)).sort(),
        ["README.md", "cfg.json", "sae_weights.safetensors"]
          .concat(config.arch === "tree" ? ["tree.json"] : []).sort(),
      );
      const cfg = JSON.parse(await Deno.readTextFile(join(exp, "cfg.json")));
      assert.equal(cfg.architecture, config.arch === "batchtopk" ? "jumprelu" : "topk");
      assert.equal(cfg.normalize_activations, "layer_norm");
      assert.equal(cfg.apply_b_dec_to_input, true);
      assert.equal(cfg.hook_name, "blocks.5.hook_resid_pre");
      const st = await readSafetensors(join(exp, "sae_weights.safetensors"));
      const n = numFeatures(config);
      assert.deepEqual(st.info("W_enc").shape, [D, n]);
      assert.deepEqual(st.info("W_dec").shape, [n, D]);
      assert.deepEqual(Array.from(st.f32("b_enc")), new Array(n).fill(0));

      await importCheckpoint("saelens", exp, back);
      const loaded = await loadCheckpoint(back);
      assert.deepEqual(loaded.config, config);
      assert.deepEqual(loaded.state.encW, state.encW);
      assert.deepEqual(loaded.state.decW, state.decW);
      assert.deepEqual(loaded.state.bDec, state.bDec);
      assert.deepEqual(loaded.state.parents, state.parents);
      assert.equal(loaded.state.threshold, state.threshold);

      const x = randn(9 * D, 99);
      const original = new ReferenceEngine(config, state);
      const roundTrip = new ReferenceEngine(loaded.config, loaded.state);
      const viaForeign = new ForeignEngine(await readSaelens(exp));
      const want = await original.encode(x, 9);
      for (const eng of [roundTrip, viaForeign]) {
        const got = await eng.encode(x, 9);
        assert.deepEqual(got.idx, want.idx);
        assert.deepEqual(got.val, want.val);
        assert.deepEqual(await eng.reconstruct(x, 9), await original.reconstruct(x, 9));
      }
    });
  });

  Deno.test(`SAELens export of ${config.arch}: the documented formula reproduces the reconstruction`, async () => {
    await withDir(async (root) => {
      const ckpt = join(root, "ckpt"), exp = join(root, "exp");
      const state = await saveTrained(ckpt, config);
      await exportCheckpoint(ckpt, "saelens", exp);
      const x = randn(11 * D, 7);
      const want = await new ReferenceEngine(config, state).reconstruct(x, 11);
      assertClose(await documentedFormula(exp, x, 11), want, {
        atol: 1e-4,
        rtol: 1e-4,
        label: `${config.arch} formula`,
      });
    });
  });
}

Deno.test("SAELens export: batchtopk with a learned θ is a JumpReLU with a threshold tensor", async () => {
  await withDir(async (root) => {
    const config = CONFIGS[1];
    const state = await saveTrained(join(root, "ckpt"), config);
    assert.ok(state.threshold > 0);
    await exportCheckpoint(join(root, "ckpt"), "saelens", join(root, "exp"));
    const st = await readSafetensors(join(root, "exp", "sae_weights.safetensors"));
    assert.deepEqual(
      Array.from(st.f32("threshold")),
      new Array(20).fill(Math.fround(state.threshold)),
    );
  });
});

/** A third-party SAELens TopK folder with an encoder bias and layer-norm inputs. */
async function thirdParty(dir: string, cfg: Record<string, unknown>, d = 6, n = 10) {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfg));
  await writeSafetensors(join(dir, "sae_weights.safetensors"), {
    W_enc: { shape: [d, n], data: randn(d * n, 1) },
    W_dec: { shape: [n, d], data: randn(n * d, 2) },
    b_enc: { shape: [n], data: randn(n, 3) },
    b_dec: { shape: [d], data: randn(d, 4) },
  });
}

Deno.test("SAELens import of a third-party TopK SAE follows SAELens' formula (b_enc, layer_norm)", async () => {
  await withDir(async (dir) => {
    const d = 6, n = 10, k = 3, B = 5;
    await thirdParty(dir, {
      architecture: "topk",
      d_in: d,
      d_sae: n,
      k,
      normalize_activations: "layer_norm",
      apply_b_dec_to_input: true,
      metadata: { hook_name: "blocks.2.hook_resid_post" },
    });
    const sae = await readForeign("saelens", dir);
    assert.equal(sae.normalize, "layer_norm");
    assert.equal(sae.info.hook_name, "blocks.2.hook_resid_post");
    const st = await readSafetensors(join(dir, "sae_weights.safetensors"));
    const [wEnc, wDec, bEnc, bDec] = ["W_enc", "W_dec", "b_enc", "b_dec"].map((t) => st.f32(t));
    const x = randn(B * d, 5);
    const want = new Float32Array(B * d);
    for (let b = 0; b < B; b++) {
      const row = Array.from(x.subarray(b * d, (b + 1) * d));
      const mu = row.reduce((s, v) => s + v, 0) / d;
      const sd = Math.sqrt(row.reduce((s, v) => s + (v - mu) ** 2, 0) / (d - 1)); // torch.std
      const xs = row.map((v) => (v - mu) / (sd + 1e-5));
      const pre = Array.from({ length: n }, (_, i) => {
        let s = bEnc[i];
        for (let j = 0; j < d; j++) s += (xs[j] - bDec[j]) * wEnc[j * n + i];
        return s;
      });
      const top = pre.map((v, i) => [v, i]).sort((p, q) => q[0] - p[0]).slice(0, k);
      for (let j = 0; j < d; j++) {
        let s = bDec[j];
        for (const [v, i] of top) s += Math.max(v, 0) * wDec[i * d + j];
        want[b * d + j] = s * sd + mu;
      }
    }
    assertClose(await new ForeignEngine(sae).reconstruct(x, B), want, { atol: 1e-4, rtol: 1e-4 });
    await assert.rejects(
      importCheckpoint("saelens", dir, join(dir, "native")),
      /cannot become an Arbor checkpoint.*normalisation is "layer_norm".*encoder bias \(b_enc\[0\]/,
    );
  });
});

Deno.test("SAELens import errors name the file and the field", async () => {
  await withDir(async (dir) => {
    const cfgPath = join(dir, "cfg.json");
    await thirdParty(dir, { architecture: "topk", d_sae: 10, k: 3 });
    await assert.rejects(readSaelens(dir), (e: Error) => {
      assert.equal(e.message, `${cfgPath}: required field "d_in" is missing (the input width)`);
      return true;
    });
    await thirdParty(dir, { architecture: "topk", d_in: 6, d_sae: 10 });
    await assert.rejects(readSaelens(dir), new RegExp(`${cfgPath}: required field "k" is missing`));
    await thirdParty(dir, { architecture: "gated", d_in: 6, d_sae: 10 });
    await assert.rejects(readSaelens(dir), /field "architecture" = "gated" is not supported/);
    await thirdParty(dir, {
      architecture: "standard",
      activation_fn_str: "topk",
      activation_fn_kwargs: { k: 2 },
      d_in: 6,
      d_sae: 10,
      normalize_activations: "expected_average_only_in",
    });
    await assert.rejects(
      readSaelens(dir),
      /field "normalize_activations" = "expected_average_only_in" is not supported/,
    );
    await thirdParty(dir, { architecture: "topk", d_in: 6, d_sae: 11, k: 2 });
    await assert.rejects(
      readSaelens(dir),
      /sae_weights\.safetensors: tensor "W_enc" has shape \[6,10\], expected \[6,11\]/,
    );
    await Deno.remove(cfgPath);
    await assert.rejects(readSaelens(dir), new RegExp(`${cfgPath}: file not found`));
  });
});

Deno.test("SAELens export of an MP-SAE: ForeignEngine and the documented pursuit match MpEngine", async () => {
  await withDir(async (root) => {
    const config = makeMpConfig({ dIn: D, layers: [16], k: 4, lr: 1e-2, seed: 9 });
    const eng = MpEngine.create(config);
    for (let i = 0; i < 3; i++) await eng.step(randn(16 * D, 30 + i), 16);
    const state = await eng.readState();
    const exp = join(root, "exp");
    await exportSaelens(exp, config as unknown as SaeConfig, state);
    const cfg = JSON.parse(await Deno.readTextFile(join(exp, "cfg.json")));
    assert.equal(cfg.architecture, "arbor_mp");
    assert.match(cfg.arbor.selection, /matching pursuit/);
    const x = randn(9 * D, 31);
    const foreign = new ForeignEngine(await readSaelens(exp));
    const want = await eng.encode(x, 9);
    const got = await foreign.encode(x, 9);
    assert.deepEqual(got.idx, want.idx);
    assert.deepEqual(got.val, want.val);
    const recon = await eng.reconstruct(x, 9);
    assert.deepEqual(await foreign.reconstruct(x, 9), recon);
    // the documented formula with the pursuit as select, from the exported files alone
    const st = await readSafetensors(join(exp, "sae_weights.safetensors"));
    const wDec = st.f32("W_dec");
    const n = 16, k = 4;
    const out = new Float32Array(9 * D);
    for (let b = 0; b < 9; b++) {
      const row = Array.from(x.subarray(b * D, (b + 1) * D));
      const mu = row.reduce((s, v) => s + v, 0) / D;
      const sigma = Math.sqrt(row.reduce((s, v) => s + (v - mu) ** 2, 0) / D);
      const r = row.map((v) => (v - mu) / (sigma + 1e-5));
      const f = new Array(n).fill(0);
      for (let t = 0; t < k; t++) {
        const c = Array.from(
          { length: n },
          (_, i) => r.reduce((s, v, j) => s + v * wDec[i * D + j], 0),
        );
        const i = c.indexOf(Math.max(...c));
        if (!(c[i] > 0)) break;
        const again = f[i] !== 0;
        f[i] += c[i];
        for (let j = 0; j < D; j++) r[j] -= c[i] * wDec[i * D + j];
        if (Math.hypot(...r) < 5e-3 || again) break;
      }
      for (let j = 0; j < D; j++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += f[i] * wDec[i * D + j];
        out[b * D + j] = s * (sigma + 1e-5) + mu;
      }
    }
    assertClose(out, recon, { atol: 1e-4, rtol: 1e-4, label: "mp formula" });
  });
});
