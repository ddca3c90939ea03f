/**
 * ReferenceEngine: the whole training step in plain TypeScript, composed from
 * lib/sae/reference/ops.ts — the twin the GPU engine is tested against, and the
 * `--engine reference` fallback. Slow (dense pre [B, n] on the host) but exact.
 */
import type { SaeConfig } from "./config.ts";
import { featureLayers, layerOffsets, numFeatures, slotsPerRow } from "./config.ts";
import {
  adamStep,
  type AuxGroup,
  auxGroups,
  backward,
  type Codes,
  deadMask,
  decode,
  encode,
  fireCounts,
  geometricMedian,
  type Grads,
  levelReconstructions,
  losses,
  type LossResult,
  removeParallelGrad,
  renormRows,
  selectAux,
  selectBatchTopK,
  selectThreshold,
  selectTopK,
  selectTree,
  standardize,
  THRESHOLD_DECAY,
  unstandardize,
  updateDeadCounters,
} from "./reference/ops.ts";
import {
  checkStateShapes,
  cloneState,
  type EncodeResult,
  initState,
  type SaeEngine,
  type SaeState,
  type StepStats,
} from "./engine.ts";
import { ArborError } from "../errors.ts";

/** The TypeScript reference engine (CPU, plain loops). */
export class ReferenceEngine implements SaeEngine {
  readonly config: SaeConfig;
  readonly description = "reference engine (TypeScript on the CPU)";
  #state: SaeState;
  readonly #n: number;
  readonly #featureLayer: Uint32Array;
  readonly #groups: AuxGroup[];

  /** An engine for `config`, starting from `state` (default: a fresh seeded init). */
  constructor(config: SaeConfig, state?: SaeState) {
    this.config = config;
    this.#n = numFeatures(config);
    this.#featureLayer = featureLayers(config);
    this.#groups = auxGroups(config);
    if (state) checkStateShapes(config, state);
    this.#state = state ? cloneState(state) : initState(config);
  }

  /** One training step: forward, loss, sparse backward, Adam, renorm, dead counters. */
  step(x: Float32Array, B: number): Promise<StepStats> {
    const { dIn: d } = this.config;
    checkBatch(x, B, d);
    const { xs } = standardize(x, B, d);
    if (this.#state.step === 0) this.#state.bDec = geometricMedian(xs, B, d);
    const pre = encode(xs, this.#state.encW, this.#state.bDec, B, d, this.#n);
    const codes = this.#selectTrain(pre, B);
    const loss = this.#loss(xs, pre, B, codes);
    const grads = backward(
      xs,
      B,
      d,
      this.#n,
      this.#state.encW,
      this.#state.decW,
      this.#state.bDec,
      codes,
      this.#featureLayer,
      loss,
    );
    this.#applyOptimizer(grads);
    const fired = fireCounts(codes, B, this.#n);
    updateDeadCounters(this.#state.tokensSinceFired, fired, B);
    if ("minKept" in codes) this.#updateThreshold(codes.minKept as number);
    this.#state.step++;
    return Promise.resolve(this.#stats(loss, codes, B, fired));
  }

  /** Inference codes (batchtopk uses θ once set, TopK with k slots before that). */
  encode(x: Float32Array, B: number): Promise<EncodeResult> {
    const d = this.config.dIn;
    checkBatch(x, B, d);
    const { xs } = standardize(x, B, d);
    const pre = encode(xs, this.#state.encW, this.#state.bDec, B, d, this.#n);
    return Promise.resolve(this.#selectInference(pre, B));
  }

  /** Inference reconstruction in raw space: decode the codes, then undo standardisation. */
  async reconstruct(x: Float32Array, B: number): Promise<Float32Array> {
    const d = this.config.dIn;
    const { mean, std } = standardize(x, B, d);
    const codes = await this.encode(x, B);
    const xs = decode(codes.idx, codes.val, B, codes.K, this.#state.decW, this.#state.bDec, d);
    return unstandardize(xs, mean, std, B, d);
  }

  /** A deep copy of the state. */
  readState(): Promise<SaeState> {
    return Promise.resolve(cloneState(this.#state));
  }

  /** Replace the state with a copy of `state` (shapes checked). */
  writeState(state: SaeState): Promise<void> {
    checkStateShapes(this.config, state);
    this.#state = cloneState(state);
    return Promise.resolve();
  }

  /** Nothing to release on the CPU. */
  destroy(): void {}

  #selectTrain(pre: Float32Array, B: number): Codes & { minKept?: number } {
    const c = this.config;
    switch (c.arch) {
      case "topk":
      case "matryoshka":
        return selectTopK(pre, B, this.#n, c.k);
      case "batchtopk":
        return selectBatchTopK(pre, B, this.#n, c.k, slotsPerRow(c));
      case "tree":
        return selectTree(pre, B, this.#n, c.layers, c.kPerLayer, this.#state.parents);
      default:
        throw new ArborError(`the reference engine does not train arch "${c.arch}"`);
    }
  }

  #selectInference(pre: Float32Array, B: number): Codes {
    const c = this.config;
    if (c.arch === "batchtopk" && this.#state.threshold >= 0) {
      return selectThreshold(pre, B, this.#n, slotsPerRow(c), this.#state.threshold);
    }
    if (c.arch === "tree") {
      return selectTree(pre, B, this.#n, c.layers, c.kPerLayer, this.#state.parents);
    }
    return selectTopK(pre, B, this.#n, c.k);
  }

  #loss(xs: Float32Array, pre: Float32Array, B: number, codes: Codes): LossResult {
    const s = this.#state;
    const d = this.config.dIn;
    const L = this.config.layers.length;
    const recon = levelReconstructions(
      codes.idx,
      codes.val,
      B,
      codes.K,
      s.decW,
      s.bDec,
      d,
      this.#featureLayer,
      L,
    );
    const dead = deadMask(s.tokensSinceFired, this.config.deadTokens);
    const aux = this.#groups.map((g) =>
      selectAux(pre, B, this.#n, g, dead, this.config.auxK, codes, s.parents)
    );
    return losses(xs, B, d, recon, s.decW, this.#groups, aux);
  }

  #applyOptimizer(g: Grads) {
    const s = this.#state;
    const { dIn: d, lr } = this.config;
    const t = s.step + 1;
    removeParallelGrad(g.decW, s.decW, this.#n, d);
    adamStep(s.encW, g.encW, s.adam.encW.m, s.adam.encW.v, t, lr);
    adamStep(s.decW, g.decW, s.adam.decW.m, s.adam.decW.v, t, lr);
    adamStep(s.bDec, g.bDec, s.adam.bDec.m, s.adam.bDec.v, t, lr);
    renormRows(s.decW, this.#n, d);
  }

  #updateThreshold(minKept: number) {
    if (!(minKept > 0)) return; // nothing positive kept: keep θ
    const s = this.#state;
    s.threshold = s.threshold < 0
      ? minKept
      : THRESHOLD_DECAY * s.threshold + (1 - THRESHOLD_DECAY) * minKept;
  }

  #stats(loss: LossResult, codes: Codes, B: number, fired: Uint32Array): StepStats {
    const c = this.config;
    const off = layerOffsets(c);
    const active = new Array(c.layers.length).fill(0);
    for (let t = 0; t < codes.idx.length; t++) {
      if (codes.val[t] > 0) active[this.#featureLayer[codes.idx[t]]]++;
    }
    const dead = deadMask(this.#state.tokensSinceFired, c.deadTokens);
    const deadFraction = c.layers.map((size, l) => {
      let count = 0;
      for (let f = off[l]; f < off[l + 1]; f++) count += dead[f];
      return count / size;
    });
    const l0PerLayer = active.map((a) => a / B);
    return {
      step: this.#state.step,
      loss: loss.total,
      mainLoss: loss.mainPerLevel,
      auxLoss: loss.aux.map((t) => t.value),
      fvu: loss.fvu,
      l0: l0PerLayer.reduce((a, b) => a + b, 0),
      l0PerLayer,
      deadFraction,
      fireCounts: fired,
    };
  }
}

/** Reject a batch whose length does not match B·d (a bug in the caller, named clearly). */
export function checkBatch(x: { length: number }, B: number, d: number) {
  if (!(Number.isInteger(B) && B >= 1) || x.length !== B * d) {
    throw new ArborError(`SAE batch: got ${x.length} floats for B = ${B} rows of d_in = ${d}`);
  }
}
