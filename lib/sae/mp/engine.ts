/**
 * MpEngine: the Matching-Pursuit SAE (lib/sae/mp/reference.ts) as an SaeEngine the trainer can
 * drive. The pursuit — k scoring passes over the whole dictionary per step, the dominant cost —
 * runs as kernels/mp.wgsl when a GPU is given, else as the TypeScript twin. The backward pass
 * (O(B·k·d)) and the optimiser step (decoder rows: parallel-gradient removal, Adam,
 * renormalisation) run on the host; the new decoder is uploaded after each step.
 *
 * Tied weights: decW is the parameter; encW mirrors it (so checkpoints hold a usable encoder),
 * its Adam moments stay zero. bDec stays 0 (no decoder bias in the paper's MP setup). Standardised
 * inputs as every Arbor SAE. No AuxK (the ref's MP-SAE has none): auxLoss is [0].
 *
 * Until `SaeArch` includes "mp" (lib/sae/config.ts) the config is typed `MpConfig`; once it does,
 * MpConfig is a SaeConfig and MpEngine a SaeEngine with no change here.
 */
import type { Gpu } from "../../gpu/device.ts";
import { uploadStorage, writeBuffer } from "../../gpu/buffer.ts";
import { ArborError } from "../../errors.ts";
import { makeConfig, numFeatures, type SaeConfig, type SaeConfigInput } from "../config.ts";
import {
  checkStateShapes,
  cloneState,
  type EncodeResult,
  initState,
  type SaeState,
  type StepStats,
} from "../engine.ts";
import { checkBatch } from "../reference_engine.ts";
import {
  adamStep,
  batchVariance,
  deadMask,
  decode,
  fireCounts,
  removeParallelGrad,
  renormRows,
  standardize,
  unstandardize,
  updateDeadCounters,
} from "../reference/ops.ts";
import { MP_RESIDUAL_EPS, mpBackward, mpLoss, mpPursuit, type MpState } from "./reference.ts";
import { mpPursuitGpu } from "./pursuit_gpu.ts";

/** An MP-SAE configuration: a SaeConfig with arch "mp" (one layer of n atoms, k = max steps). */
export type MpConfig = Omit<SaeConfig, "arch"> & { arch: "mp" };

/** Fill defaults and validate (same rules as topk: one layer, 1 ≤ k ≤ n); AuxK is off. */
export function makeMpConfig(
  input: Omit<SaeConfigInput, "arch">,
  where = "MP-SAE config",
): MpConfig {
  const c = makeConfig({ ...input, arch: "topk", auxK: 0 }, where);
  return { ...c, arch: "mp" };
}

/** The config as the shared helpers' type (identical fields; arch widened). */
function asSae(c: MpConfig): SaeConfig {
  return c as unknown as SaeConfig;
}

/** Options of `MpEngine.create`. */
export interface MpEngineOptions {
  /** Run the pursuit on this GPU (null/undefined: the TypeScript twin on the CPU). */
  gpu?: Gpu | null;
  /** Residual-norm stopping threshold (default MP_RESIDUAL_EPS = 5e-3). */
  eps?: number;
}

/** The MP-SAE engine. */
export class MpEngine {
  readonly config: MpConfig;
  readonly description: string;
  readonly #n: number;
  readonly #eps: number;
  readonly #gpu: Gpu | null;
  #state: SaeState;
  #decBuf: GPUBuffer | null = null;

  /** An engine for `config` from `state` (default: seeded init with bDec = 0). */
  static create(config: MpConfig, state?: SaeState, opts: MpEngineOptions = {}): MpEngine {
    return new MpEngine(config, state, opts);
  }

  private constructor(config: MpConfig, state: SaeState | undefined, opts: MpEngineOptions) {
    if (config.arch !== "mp") {
      throw new ArborError(`MpEngine: config arch is "${config.arch}", expected "mp"`);
    }
    this.config = config;
    this.#n = numFeatures(config);
    this.#eps = opts.eps ?? MP_RESIDUAL_EPS;
    this.#gpu = opts.gpu ?? null;
    if (state) checkStateShapes(asSae(config), state);
    this.#state = state ? cloneState(state) : initState(asSae(config));
    if (!state) {
      this.#state.bDec.fill(0);
      this.#state.encW = this.#state.decW.slice();
    }
    this.description = this.#gpu
      ? `MP-SAE engine (pursuit on WebGPU: ${this.#gpu.description}; backward on the CPU)`
      : "MP-SAE engine (TypeScript on the CPU)";
    if (this.#gpu) this.#decBuf = uploadStorage(this.#gpu, this.#state.decW, "mp decW");
  }

  async #pursuit(xs: Float32Array, B: number): Promise<MpState> {
    const { dIn: d, k } = this.config;
    if (this.#gpu && this.#decBuf) {
      return await mpPursuitGpu(this.#gpu, this.#decBuf, xs, { B, d, n: this.#n, k }, this.#eps);
    }
    return mpPursuit(xs, this.#state.decW, B, d, this.#n, k, this.#eps);
  }

  /** One optimiser step on x [B, d]: pursuit, loss, backward through every iteration, Adam. */
  async step(x: Float32Array, B: number): Promise<StepStats> {
    const { dIn: d, lr, deadTokens } = this.config;
    const n = this.#n;
    checkBatch(x, B, d);
    const { xs } = standardize(x, B, d);
    const totalVar = Math.max(batchVariance(xs, B, d), Number.MIN_VALUE);
    const p = await this.#pursuit(xs, B);
    const fvu = mpLoss(p.residual, totalVar);
    const s = this.#state;
    const grad = mpBackward(p, s.decW, B, d, n, totalVar);
    removeParallelGrad(grad, s.decW, n, d);
    adamStep(s.decW, grad, s.adam.decW.m, s.adam.decW.v, s.step + 1, lr);
    renormRows(s.decW, n, d);
    s.encW.set(s.decW);
    if (this.#gpu && this.#decBuf) writeBuffer(this.#gpu, this.#decBuf, s.decW);
    const fired = fireCounts(p, B, n);
    updateDeadCounters(s.tokensSinceFired, fired, B);
    s.step++;
    let active = 0;
    for (let t = 0; t < p.val.length; t++) if (p.val[t] > 0) active++;
    const dead = deadMask(s.tokensSinceFired, deadTokens).reduce((a, v) => a + v, 0);
    return {
      step: s.step,
      loss: fvu,
      mainLoss: [fvu],
      auxLoss: [0],
      fvu,
      l0: active / B,
      l0PerLayer: [active / B],
      deadFraction: [dead / n],
      fireCounts: fired,
    };
  }

  /** Inference codes: the pursuit's slots (pick order), K = k. */
  async encode(x: Float32Array, B: number): Promise<EncodeResult> {
    const d = this.config.dIn;
    checkBatch(x, B, d);
    const p = await this.#pursuit(standardize(x, B, d).xs, B);
    return { idx: p.idx, val: p.val, K: p.K };
  }

  /** Inference reconstruction in raw space: Σ val·decW[idx] (+ bDec = 0), un-standardised. */
  async reconstruct(x: Float32Array, B: number): Promise<Float32Array> {
    const d = this.config.dIn;
    checkBatch(x, B, d);
    const { xs, mean, std } = standardize(x, B, d);
    const p = await this.#pursuit(xs, B);
    const xhat = decode(p.idx, p.val, B, p.K, this.#state.decW, this.#state.bDec, d);
    return unstandardize(xhat, mean, std, B, d);
  }

  /** A deep copy of the state. */
  readState(): Promise<SaeState> {
    return Promise.resolve(cloneState(this.#state));
  }

  /** Replace the state (shapes checked; the GPU copy of the atoms is refreshed). */
  writeState(state: SaeState): Promise<void> {
    checkStateShapes(asSae(this.config), state);
    this.#state = cloneState(state);
    if (this.#gpu && this.#decBuf) writeBuffer(this.#gpu, this.#decBuf, this.#state.decW);
    return Promise.resolve();
  }

  /** Release the GPU copy of the atoms. */
  destroy(): void {
    this.#decBuf?.destroy();
    this.#decBuf = null;
  }
}
