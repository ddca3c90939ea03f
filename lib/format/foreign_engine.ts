/**
 * ForeignEngine: an inference-only SaeEngine over a ForeignSae (SAELens / sparsify import),
 * so `evaluate`-style code can encode and reconstruct with a model whose formula has an
 * encoder bias or another input normalisation (lib/format/foreign_sae.ts). Plain TypeScript
 * on the CPU; `step` refuses (these models are not trained here).
 */
import { ArborError } from "../errors.ts";
import type { SaeConfig } from "../sae/config.ts";
import { numFeatures } from "../sae/config.ts";
import type { EncodeResult, SaeEngine, SaeState, StepStats } from "../sae/engine.ts";
import { checkBatch } from "../sae/reference_engine.ts";
import { foreignEncode, foreignReconstruct, type ForeignSae } from "./foreign_sae.ts";

/** Inference over an imported SAE. */
export class ForeignEngine implements SaeEngine {
  readonly config: SaeConfig;
  readonly description: string;
  readonly #sae: ForeignSae;

  /** An engine over `sae` (the arrays are used as they are, not copied). */
  constructor(sae: ForeignSae) {
    this.#sae = sae;
    this.config = sae.config;
    this.description =
      `imported ${sae.format} SAE (${sae.source}), TypeScript inference on the CPU`;
  }

  /** Imported models are inference-only. */
  step(_x: Float32Array, _B: number): Promise<StepStats> {
    return Promise.reject(
      new ArborError(
        `${this.#sae.source}: an imported ${this.#sae.format} SAE is inference-only; convert ` +
          "it with `export --from` (possible when it has no encoder bias and uses Arbor's " +
          "standardisation) or train a new SAE",
      ),
    );
  }

  /** Codes by the imported formula. */
  encode(x: Float32Array, B: number): Promise<EncodeResult> {
    checkBatch(x, B, this.config.dIn);
    return Promise.resolve(foreignEncode(this.#sae, x, B));
  }

  /** Reconstruction in the raw input space by the imported formula. */
  reconstruct(x: Float32Array, B: number): Promise<Float32Array> {
    checkBatch(x, B, this.config.dIn);
    return Promise.resolve(foreignReconstruct(this.#sae, x, B));
  }

  /** The weights as an Arbor state (b_enc and the normalisation are not part of it). */
  readState(): Promise<SaeState> {
    const s = this.#sae;
    const n = numFeatures(this.config);
    const d = this.config.dIn;
    const z = (len: number) => ({ m: new Float32Array(len), v: new Float32Array(len) });
    return Promise.resolve({
      encW: s.encW.slice(),
      decW: s.decW.slice(),
      bDec: s.bDec.slice(),
      parents: s.parents.map((p) => p.slice()),
      adam: { encW: z(n * d), decW: z(n * d), bDec: z(d) },
      tokensSinceFired: new Uint32Array(n),
      threshold: s.threshold,
      step: 0,
    });
  }

  /** Imported models are read-only. */
  writeState(_state: SaeState): Promise<void> {
    return Promise.reject(new ArborError(`${this.#sae.source}: an imported SAE is read-only`));
  }

  /** Nothing to release. */
  destroy(): void {}
}
