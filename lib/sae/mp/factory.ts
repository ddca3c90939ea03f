/**
 * Build an MpEngine the way lib/train/engine_factory.ts builds the others: "reference" runs
 * the pursuit in TypeScript; otherwise the pursuit runs on WebGPU when a device opens, falling
 * back to TypeScript with a notice (an explicit "gpu" that fails is an error).
 */
import { getGpu } from "../../gpu/device.ts";
import { ArborError } from "../../errors.ts";
import type { SaeState } from "../engine.ts";
import { type MpConfig, MpEngine } from "./engine.ts";

/** An MP-SAE engine for `config` (kind as in createEngine: "gpu" | "reference" | undefined). */
export async function createMpEngine(
  kind: "gpu" | "reference" | undefined,
  config: MpConfig,
  state: SaeState | undefined,
  notice: (line: string) => void,
): Promise<MpEngine> {
  if (kind === "reference") return MpEngine.create(config, state);
  try {
    const gpu = await getGpu({ quiet: true });
    return MpEngine.create(config, state, { gpu });
  } catch (e) {
    const why = (e as Error).message.split("\n")[0];
    if (kind === "gpu") {
      throw new ArborError(
        `--engine gpu: WebGPU is unavailable for the MP-SAE pursuit (${why}); use --engine reference`,
      );
    }
    notice(`note: WebGPU is unavailable (${why}); the MP-SAE pursuit runs in TypeScript (slow)`);
    return MpEngine.create(config, state);
  }
}
