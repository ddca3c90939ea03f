/** Tests of the engine choice (lib/train/engine_factory.ts). */
import assert from "node:assert/strict";
import { makeConfig } from "../../lib/sae/config.ts";
import { ReferenceEngine } from "../../lib/sae/reference_engine.ts";
import { createEngine } from "../../lib/train/engine_factory.ts";

const CONFIG = makeConfig({ arch: "topk", dIn: 4, layers: [8], k: 2 });
const MISSING = "./no_such_gpu_engine_module.ts";

Deno.test("--engine reference builds the reference engine without touching WebGPU", async () => {
  const notes: string[] = [];
  const e = await createEngine("reference", CONFIG, undefined, (l) => notes.push(l), MISSING);
  assert.ok(e instanceof ReferenceEngine);
  assert.deepEqual(notes, []);
});

Deno.test("default engine falls back to the reference engine with a notice when the GPU engine fails", async () => {
  const notes: string[] = [];
  const e = await createEngine(undefined, CONFIG, undefined, (l) => notes.push(l), MISSING);
  assert.ok(e instanceof ReferenceEngine);
  assert.equal(notes.length, 1);
  assert.match(
    notes[0],
    /the WebGPU engine is unavailable .*using the TypeScript reference engine/,
  );
});

Deno.test("an explicit --engine gpu that fails is an error", async () => {
  await assert.rejects(
    () => createEngine("gpu", CONFIG, undefined, () => {}, MISSING),
    /--engine gpu: the WebGPU engine is unavailable .*use --engine reference/,
  );
});
