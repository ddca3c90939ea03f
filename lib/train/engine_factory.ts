/** Choose and build the SAE engine for a run: the WebGPU engine, or the TypeScript reference. */
import { ArborError } from "../errors.ts";
import type { SaeConfig } from "../sae/config.ts";
import type { SaeEngine, SaeState } from "../sae/engine.ts";
import { ReferenceEngine } from "../sae/reference_engine.ts";

/** Engine kinds a user can ask for. */
export type EngineKind = "gpu" | "reference";

/**
 * The GPU engine's module. Imported lazily so `--engine reference` never touches WebGPU.
 * (Switch to a literal specifier once lib/sae/gpu_engine.ts is in the tree, so
 * `deno compile` bundles it.)
 */
const GPU_ENGINE_MODULE = "../sae/gpu_engine.ts";

/**
 * Build the engine. `kind` undefined means "gpu if it works, else the reference engine,
 * saying why through `notice`"; an explicit "gpu" that fails is an error. `gpuModule`
 * replaces the GPU engine's module (tests).
 */
export async function createEngine(
  kind: EngineKind | undefined,
  config: SaeConfig,
  state: SaeState | undefined,
  notice: (line: string) => void,
  gpuModule = GPU_ENGINE_MODULE,
): Promise<SaeEngine> {
  if (kind === "reference") return new ReferenceEngine(config, state);
  try {
    const mod = await import(gpuModule);
    return await mod.GpuEngine.create(config, state) as SaeEngine;
  } catch (e) {
    const why = (e as Error).message.split("\n")[0];
    if (kind === "gpu") {
      throw new ArborError(
        `--engine gpu: the WebGPU engine is unavailable (${why}); use --engine reference`,
      );
    }
    notice(
      `note: the WebGPU engine is unavailable (${why}); using the TypeScript reference engine (slow)`,
    );
    return new ReferenceEngine(config, state);
  }
}
