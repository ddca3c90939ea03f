/**
 * The interface every SAE engine implements (the TS ReferenceEngine and the WebGPU
 * engine), the model + optimiser state they exchange, and the per-step statistics.
 * The trainer, checkpoints and the Tree SAE's reallocation only talk to this.
 */
import type { SaeConfig } from "./config.ts";
import { numFeatures } from "./config.ts";
import { ArborError } from "../errors.ts";
import { initParams } from "./reference/init.ts";
import type { BatchValues } from "../util/f16.ts";

/** What one training step reports (values of the batch just trained on, before the update). */
export interface StepStats {
  /** Steps done after this one (1 after the first step). */
  step: number;
  /** Total loss: Σ mainLoss + Σ auxAlpha·auxLoss. */
  loss: number;
  /** [levels] ‖x̂s_{≤l} − xs‖² / totalVar per level (1 entry for topk/batchtopk). */
  mainLoss: number[];
  /** [aux groups] AuxK terms before α (tree: one per layer; others: one); 0 where off or no dead features. */
  auxLoss: number[];
  /** Fraction of variance unexplained by the full reconstruction (the last level's term). */
  fvu: number;
  /** Mean number of slots with val > 0 per token, all layers together. */
  l0: number;
  /** [layers] mean number of active (val > 0) features per token in each layer. */
  l0PerLayer: number[];
  /** [layers] fraction of each layer's features that are dead after this step's counter update. */
  deadFraction: number[];
  /** [n] tokens of this batch each feature fired on (val > 1e-3). */
  fireCounts: Uint32Array;
}

/** A submitted training step: its statistics arrive when the GPU is done with it. */
export interface StepTicket {
  /**
   * The step's statistics. The engine starts reading them back when the next step is submitted;
   * calling this starts it at once if not (the host may then wait for all submitted GPU work).
   */
  stats(): Promise<StepStats>;
  /** Whether the statistics are in (or failed): `stats()` would settle without waiting. */
  readonly ready: boolean;
}

/** Adam first and second moments of one parameter (same length as the parameter). */
export interface AdamMoments {
  /** First moment m. */
  m: Float32Array;
  /** Second moment v. */
  v: Float32Array;
}

/** Complete model and optimiser state: what a checkpoint holds and resume restores. */
export interface SaeState {
  /** [n, d] encoder rows. */
  encW: Float32Array;
  /** [n, d] unit-norm decoder rows (the checkpoint stores the transpose [d, n]). */
  decW: Float32Array;
  /** [d] decoder bias (in standardised space). */
  bDec: Float32Array;
  /** tree: Int32Array [s_l] per layer, values in [0, o_l], o_l = root (layer 0 all 0); others: []. */
  parents: Int32Array[];
  /** Adam moments per parameter. Adam's bias-correction t of the next step is `step + 1`. */
  adam: { encW: AdamMoments; decW: AdamMoments; bDec: AdamMoments };
  /** [n] tokens since each feature last fired (val > 1e-3), saturating u32. */
  tokensSinceFired: Uint32Array;
  /** BatchTopK inference threshold θ (EMA of the smallest kept value); −1 until the first step sets it. */
  threshold: number;
  /** Training steps done. Step 0 means bDec is still to be set from the first batch. */
  step: number;
}

/** Sparse codes from inference-mode encoding. */
export interface EncodeResult {
  /** [B, K] feature index per slot (0xFFFFFFFF where unused). */
  idx: Uint32Array;
  /** [B, K] code values. */
  val: Float32Array;
  /** Slots per row. */
  K: number;
}

// A training batch's rows (lib/util/f16.ts): engines with `enqueueStep` take f16 too (the GPU
// engine widens it on the GPU).
export { type BatchValues, batchValuesF32 } from "../util/f16.ts";

/**
 * An SAE engine. Batches are raw activations x [B, d] (row-major f32); the engine
 * standardises per token. The first step (state.step = 0) sets bDec to the geometric
 * median of the standardised batch before the forward pass.
 */
export interface SaeEngine {
  /** The validated model configuration. */
  readonly config: SaeConfig;
  /** One line naming the engine and device, for logs. */
  readonly description: string;
  /** One optimiser step on x [B, d]; returns the batch's statistics. */
  step(x: Float32Array, B: number): Promise<StepStats>;
  /**
   * Optional pipelining: submit one step and resolve once it is submitted, so the caller can
   * enqueue the next before this one's statistics arrive (same weights as `step`). Callers await
   * each call before the next; the engine's other methods wait for the steps in flight.
   */
  enqueueStep?(x: BatchValues, B: number): Promise<StepTicket>;
  /** Inference codes for x [B, d] (batchtopk: threshold θ; tree: gated). */
  encode(x: Float32Array, B: number): Promise<EncodeResult>;
  /** Inference reconstruction of x [B, d] in the raw (unstandardised) space. */
  reconstruct(x: Float32Array, B: number): Promise<Float32Array>;
  /** A copy of the full state (host arrays). */
  readState(): Promise<SaeState>;
  /** Replace the full state (shapes are checked against the config). */
  writeState(state: SaeState): Promise<void>;
  /** Release device resources; the engine is unusable afterwards. */
  destroy(): void;
}

/** A fresh state for `config`: seeded init (initParams), zero moments and counters, step 0. */
export function initState(config: SaeConfig): SaeState {
  const p = initParams(config);
  const n = numFeatures(config);
  const d = config.dIn;
  const moments = (len: number): AdamMoments => ({
    m: new Float32Array(len),
    v: new Float32Array(len),
  });
  return {
    encW: p.encW,
    decW: p.decW,
    bDec: p.bDec,
    parents: p.parents,
    adam: { encW: moments(n * d), decW: moments(n * d), bDec: moments(d) },
    tokensSinceFired: new Uint32Array(n),
    threshold: -1,
    step: 0,
  };
}

/** A deep copy of a state. */
export function cloneState(s: SaeState): SaeState {
  const mom = (a: AdamMoments): AdamMoments => ({ m: a.m.slice(), v: a.v.slice() });
  return {
    encW: s.encW.slice(),
    decW: s.decW.slice(),
    bDec: s.bDec.slice(),
    parents: s.parents.map((p) => p.slice()),
    adam: { encW: mom(s.adam.encW), decW: mom(s.adam.decW), bDec: mom(s.adam.bDec) },
    tokensSinceFired: s.tokensSinceFired.slice(),
    threshold: s.threshold,
    step: s.step,
  };
}

/** Throw ArborError naming the first array of `s` whose length does not fit `config`. */
export function checkStateShapes(config: SaeConfig, s: SaeState, where = "SAE state"): void {
  const n = numFeatures(config);
  const d = config.dIn;
  const want: [string, { length: number }, number][] = [
    ["encW", s.encW, n * d],
    ["decW", s.decW, n * d],
    ["bDec", s.bDec, d],
    ["adam.encW.m", s.adam.encW.m, n * d],
    ["adam.encW.v", s.adam.encW.v, n * d],
    ["adam.decW.m", s.adam.decW.m, n * d],
    ["adam.decW.v", s.adam.decW.v, n * d],
    ["adam.bDec.m", s.adam.bDec.m, d],
    ["adam.bDec.v", s.adam.bDec.v, d],
    ["tokensSinceFired", s.tokensSinceFired, n],
  ];
  for (const [name, arr, len] of want) {
    if (arr.length !== len) {
      throw new ArborError(`${where}: ${name} has ${arr.length} values, the config needs ${len}`);
    }
  }
  const layers = config.arch === "tree" ? config.layers : [];
  if (s.parents.length !== layers.length) {
    throw new ArborError(
      `${where}: parents has ${s.parents.length} layers, the config needs ${layers.length}`,
    );
  }
  let offset = 0;
  layers.forEach((size, l) => {
    const p = s.parents[l];
    if (p.length !== size) {
      throw new ArborError(
        `${where}: parents[${l}] has ${p.length} entries, layer ${l} has ${size} features`,
      );
    }
    for (let i = 0; i < size; i++) {
      if (!(p[i] >= 0 && p[i] <= offset)) {
        throw new ArborError(
          `${where}: parents[${l}][${i}] = ${
            p[i]
          } is out of range; a layer-${l} parent must be a ` +
            `feature of an earlier layer (0..${offset - 1}) or the root (${offset})`,
        );
      }
    }
    offset += size;
  });
}
