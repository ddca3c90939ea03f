/** Load a GPT-2 family model from a local Hugging Face folder onto the GPU. */
import type { Gpu } from "../gpu/device.ts";
import { readGpt2Config } from "./config.ts";
import { Gpt2Model, type Gpt2ModelOptions } from "./model.ts";
import { openSafetensors } from "./tensor_source.ts";
import { loadGpt2Weights } from "./weights.ts";

/** Read `<dir>/config.json` and `<dir>/model.safetensors`, check them, and upload the weights. */
export async function loadGpt2Model(
  gpu: Gpu,
  dir: string,
  options: Gpt2ModelOptions = {},
): Promise<Gpt2Model> {
  const config = await readGpt2Config(dir);
  const source = await openSafetensors(`${dir}/model.safetensors`);
  const weights = loadGpt2Weights(source, config);
  return Gpt2Model.create(gpu, config, weights, options);
}
