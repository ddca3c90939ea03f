/** Choose and build the SAE engine for a run: the WebGPU engine, or the TypeScript reference. */
import { ArborError } from "../errors.ts";
import type { SaeConfig } from "../sae/config.ts";
import type { SaeEngine, SaeState } from "../sae/engine.ts";
import { ReferenceEngine } from "../sae/reference_engine.ts";
import type { MpConfig } from "../sae/mp/engine.ts";

/** Engine kinds a user can ask for. */
export type EngineKind = "gpu" | "reference";

/** Loads the GPU engine lazily so `--engine reference` never touches WebGPU (a literal specifier: `deno compile` bundles it). */
function importGpuEngine(): Promise<
  { GpuEngine: { create(c: SaeConfig, s?: SaeState): Promise<SaeEngine> } }
> {
  return import("../sae/gpu_engine.ts");
}

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
  gpuModule?: string,
): Promise<SaeEngine> {
  if (config.arch === "mp") {
    // Matching pursuit has its own engine (GPU pursuit, host backward); see lib/sae/mp/.
    const { createMpEngine } = await import("../sae/mp/factory.ts");
    return await createMpEngine(kind, config as MpConfig, state, notice);
  }
  if (kind === "reference") return new ReferenceEngine(config, state);
  try {
    const mod = gpuModule === undefined ? await importGpuEngine() : await import(gpuModule);
    return await mod.GpuEngine.create(config, state);
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
