import assert from "node:assert/strict";
import { getPreset, PRESET_NAMES, PRESETS } from "../../lib/tree/presets.ts";
import { makeConfig } from "../../lib/sae/config.ts";
import { validateLayerConfig } from "../../lib/tree/structure.ts";

Deno.test("every preset is a consistent config (sizes, k_l ≤ s_l, L0 = Σ k_l) that makeConfig accepts", () => {
  for (const name of PRESET_NAMES) {
    const p = getPreset(name);
    if (p.arch === "tree") {
      validateLayerConfig(p.layers, { kPerLayer: p.kPerLayer });
      assert.equal(p.k, p.kPerLayer.reduce((a, b) => a + b, 0), name);
      assert.equal(p.auxAlpha.length, p.layers.length, name);
      assert.deepEqual(p.auxAlpha.slice(1), new Array(p.layers.length - 1).fill(0), name);
    }
    const c = makeConfig({ ...p, dIn: 768 }, `preset ${name}`);
    assert.equal(c.k, p.k, name);
    assert.equal(c.auxAlpha[0], 1 / 32, name);
  }
});

Deno.test("presets cover Tables 1 and 2 with the paper's numbers", () => {
  assert.equal(PRESET_NAMES.length, 4 * 5 + 2 * 5);
  const n = (name: string) => PRESETS[name].layers.reduce((a, b) => a + b, 0);
  for (const l0 of [32, 48, 64, 80]) {
    for (const arch of ["tree-2layer", "tree-4layer", "matryoshka-2layer", "matryoshka-4layer"]) {
      assert.equal(n(`${arch}-l0-${l0}`), 24_576);
      assert.equal(PRESETS[`${arch}-l0-${l0}`].k, l0);
    }
    assert.deepEqual(PRESETS[`topk-l0-${l0}`].layers, [24_576]);
    assert.equal(PRESETS[`topk-l0-${l0}`].k, l0);
  }
  assert.deepEqual(PRESETS["tree-4layer-l0-32"].kPerLayer, [21, 5, 4, 2]);
  assert.deepEqual(PRESETS["tree-4layer-l0-32"].layers, [1536, 3072, 9216, 10752]);
  assert.deepEqual(PRESETS["tree-2layer-l0-48"].kPerLayer, [40, 8]);
  assert.deepEqual(PRESETS["tree-2layer-l0-80"].kPerLayer, [69, 11]);
  assert.deepEqual(PRESETS["tree-4layer-l0-80"].kPerLayer, [56, 11, 7, 6]);
  assert.deepEqual(PRESETS["tree-4layer-6k"].layers, [384, 768, 2304, 2688]);
  assert.deepEqual(PRESETS["tree-4layer-6k"].kPerLayer, [5, 1, 1, 1]);
  assert.deepEqual(PRESETS["tree-2layer-6k"].layers, [1536, 4608]);
  assert.deepEqual(PRESETS["tree-2layer-49k"].kPerLayer, [55, 9]);
  assert.deepEqual(PRESETS["tree-4layer-49k"].layers, [3072, 6144, 18432, 21504]);
  assert.equal(n("matryoshka-4layer-49k"), 49_152);
  assert.equal(PRESETS["matryoshka-2layer-6k"].k, 8);
  assert.equal(PRESETS["matryoshka-4layer-49k"].k, 64);
});

Deno.test("getPreset returns a copy and names the choices for an unknown preset", () => {
  const a = getPreset("tree-2layer-l0-32");
  a.layers[0] = 1;
  assert.equal(PRESETS["tree-2layer-l0-32"].layers[0], 6144);
  assert.throws(
    () => getPreset("tree-3layer"),
    /--preset tree-3layer: unknown preset; choose one of .*tree-4layer-l0-32/,
  );
});
