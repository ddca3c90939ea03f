/**
 * The WGSL GPT-2 forward against the fixture's float64 PyTorch references
 * (fixtures/tiny-gpt2/make_fixture.py): every hook, logits, loss, splicing.
 */
import assert from "node:assert/strict";
import { assertClose, testGpu } from "../_util.ts";
import { loadGpt2Model } from "../../lib/lm/load.ts";
import { readSafetensors } from "../../lib/format/safetensors.ts";
import { type HookPoint, parseHook } from "../../lib/lm/hooks.ts";

const FIXTURE = new URL("../../fixtures/tiny-gpt2", import.meta.url).pathname;
/** Acceptance bound of issue #6: max abs error against the references. */
const ATOL = 1e-4;

const refs = await readSafetensors(`${FIXTURE}/reference.safetensors`);
const ref = (name: string) => ({ toF32: () => refs.f32(name) });
const prompts = refs.names().filter((n) => /^p\d+\.tokens$/.test(n)).map((n) => n.split(".")[0]);
const tokensOf = (p: string) => Array.from(refs.i32(`${p}.tokens`));
const HOOKS = ["resid_pre", "attn_out", "mlp_out", "resid_post"].flatMap((s) =>
  [0, 1].map((l) => parseHook(`${s}.${l}`))
);

Deno.test("forward matches the PyTorch reference at every hook, in logits and in loss", async () => {
  const gpu = await testGpu();
  // Default chunks (8192 rows, logits by the shared GEMM), then 20000-row chunks whose logits come
  // in 7000-column sub-ranges (the lm_matmul path used when a chunk's logits overflow a binding).
  for (const options of [{}, { vocabChunkRows: 20000, logitsChunkCols: 7000 }]) {
    const model = await loadGpt2Model(gpu, FIXTURE, options);
    for (const p of prompts) {
      const tokens = tokensOf(p);
      const out = await model.forward({ tokens, capture: HOOKS, logits: true });
      for (const h of HOOKS) {
        const name = `${h.site}.${h.layer}`;
        assertClose(out.activations.get(name)!, ref(`${p}.${name}`).toF32(), {
          atol: ATOL,
          rtol: 0,
          label: `${p} ${name}`,
        });
      }
      const cols = refs.i32("logit_cols");
      const V = model.config.vocabSize;
      const got = new Float32Array(tokens.length * cols.length);
      for (let t = 0; t < tokens.length; t++) {
        cols.forEach((c, j) => got[t * cols.length + j] = out.logits![t * V + c]);
      }
      assertClose(got, ref(`${p}.logits_cols`).toF32(), {
        atol: ATOL,
        rtol: 0,
        label: `${p} logits`,
      });
      assertClose(out.logsumexp!, ref(`${p}.logsumexp`).toF32(), {
        atol: ATOL,
        rtol: 0,
        label: `${p} logsumexp`,
      });
      assertClose([out.loss!], ref(`${p}.loss`).toF32(), {
        atol: ATOL,
        rtol: 0,
        label: `${p} loss`,
      });
    }
    model.destroy();
  }
});

Deno.test("splicing the unmodified activation reproduces the clean loss exactly; zeros give the zero-ablation loss", async () => {
  const gpu = await testGpu();
  const model = await loadGpt2Model(gpu, FIXTURE);
  const p = prompts[prompts.length - 1];
  const tokens = tokensOf(p);
  const hooks: HookPoint[] = ["resid_pre.1", "attn_out.0", "mlp_out.1", "resid_post.0"].map((h) =>
    parseHook(h)
  );
  const clean = await model.forward({ tokens, capture: hooks, loss: true });
  for (const hook of hooks) {
    const name = `${hook.site}.${hook.layer}`;
    const same = await model.forward({
      tokens,
      loss: true,
      splice: { hook, values: clean.activations.get(name)! },
    });
    assert.equal(same.loss, clean.loss, `${name}: spliced clean activation changed the loss`);
    assert.deepEqual(same.nll, clean.nll);
    const zeros = new Float32Array(tokens.length * model.config.nEmbd);
    const ablated = await model.forward({ tokens, loss: true, splice: { hook, values: zeros } });
    assertClose([ablated.loss!], ref(`${p}.loss_zero.${name}`).toF32(), {
      atol: ATOL,
      rtol: 0,
      label: `zero ${name}`,
    });
    assert.ok(
      Math.abs(ablated.loss! - clean.loss!) > 1e-3,
      `${name}: zero-ablation should change the loss`,
    );
  }
  model.destroy();
});

Deno.test("a batch of windows equals each window alone; capture without loss stops early with the same values", async () => {
  const gpu = await testGpu();
  const model = await loadGpt2Model(gpu, FIXTURE);
  const a = tokensOf(prompts[1]);
  const b = [...a].reverse();
  const hooks = [parseHook("resid_post.1")];
  const both = await model.forward({
    tokens: [...a, ...b],
    seq: a.length,
    capture: hooks,
    loss: true,
  });
  const d = model.config.nEmbd;
  for (const [i, w] of [a, b].entries()) {
    const alone = await model.forward({ tokens: w, capture: hooks, loss: true });
    assertClose(
      both.activations.get("resid_post.1")!.subarray(i * w.length * d, (i + 1) * w.length * d),
      alone.activations.get("resid_post.1")!,
      {
        atol: 1e-6,
        rtol: 0,
        label: `window ${i}`,
      },
    );
    // The last position of each window has no next token (NaN); compare the others.
    assertClose(
      both.nll!.subarray(i * w.length, (i + 1) * w.length - 1),
      alone.nll!.subarray(0, w.length - 1),
      {
        atol: 1e-5,
        rtol: 0,
        label: `nll ${i}`,
      },
    );
    assert.ok(Number.isNaN(both.nll![(i + 1) * w.length - 1]));
  }
  const early = await model.forward({ tokens: a, capture: [parseHook("attn_out.0")] });
  assert.equal(early.loss, undefined);
  assertClose(early.activations.get("attn_out.0")!, ref(`${prompts[1]}.attn_out.0`).toF32(), {
    atol: ATOL,
    rtol: 0,
  });
  model.destroy();
});

Deno.test("bad input: hook beyond depth, token outside vocabulary, window longer than the context", async () => {
  const gpu = await testGpu();
  const model = await loadGpt2Model(gpu, FIXTURE);
  assert.throws(
    () => parseHook("resid_pre.2", 2),
    /hook resid_pre\.2 is beyond the model's depth: it has 2 blocks \(layers 0\.\.1\)/,
  );
  assert.throws(() => parseHook("resid_mid.0"), /is not a hook point; use one of resid_pre\.L/);
  await assert.rejects(
    model.forward({ tokens: [1, 2], capture: [parseHook("mlp_out.7")] }),
    /beyond the model's depth/,
  );
  await assert.rejects(
    model.forward({ tokens: [1, 50257], loss: true }),
    /token id 50257 at index 1 is outside the vocabulary/,
  );
  await assert.rejects(
    model.forward({ tokens: new Array(129).fill(5), loss: true }),
    /exceeds the model's 128 positions; use --context 128/,
  );
  model.destroy();
});
