/**
 * Downstream metrics with a language model (paper §5.3, App. D.2; issue #7 item 5): the
 * next-token cross-entropy when the SAE reconstruction replaces the activation at the
 * SAE's hook ("spliced"), against the clean model and against zero-ablation.
 *
 * Per pass of `windowsPerPass` windows of `seq` tokens:
 *   clean  = forward(tokens), capturing x at the hook
 *   sae    = forward(tokens) with x̂ = reconstruct(x) spliced in at the hook
 *   zero   = forward(tokens) with zeros spliced in at the hook
 * CE values are means over every position that has a next token (the model's nll).
 *   ceRecovered = (zeroCe − saeCe) / (zeroCe − cleanCe)   (1 = as good as the clean model)
 *   kl          = mean over all positions of KL(p_clean ‖ p_sae) over the vocabulary (nats),
 *                 computed from full logits, so only when `kl` is on (small passes).
 */
import type { Gpt2Model } from "../lm/model.ts";
import { hookName, type HookPoint } from "../lm/hooks.ts";

/** What the downstream metric needs. */
export interface DownstreamInput {
  model: Gpt2Model;
  hook: HookPoint;
  /** Token ids of whole windows laid end to end [windows·seq]. */
  tokens: Uint32Array;
  /** Window length. */
  seq: number;
  /** The SAE's reconstruction of x [rows, d] in raw space. */
  reconstruct: (x: Float32Array, rows: number) => Promise<Float32Array>;
  /** Windows per forward pass (default 8). */
  windowsPerPass?: number;
  /** Also compute the KL divergence to the clean model (needs full logits). */
  kl?: boolean;
}

/** Downstream result. */
export interface DownstreamResult {
  windows: number;
  seq: number;
  /** Positions with a next token that entered the CE means. */
  positions: number;
  cleanCe: number;
  saeCe: number;
  zeroCe: number;
  /** saeCe − cleanCe. */
  ceIncrease: number;
  ceRecovered: number;
  /** Mean KL(clean ‖ sae) per position, when asked for. */
  kl?: number;
}

function sumNll(nll: Float32Array): { sum: number; count: number } {
  let sum = 0, count = 0;
  for (const v of nll) {
    if (Number.isNaN(v)) continue;
    sum += v;
    count++;
  }
  return { sum, count };
}

/** Σ over rows of KL(softmax(a) ‖ softmax(b)), logits [rows, V] with their log-sum-exps. */
export function klSum(
  a: Float32Array,
  lseA: Float32Array,
  b: Float32Array,
  lseB: Float32Array,
  rows: number,
  V: number,
): number {
  let total = 0;
  for (let r = 0; r < rows; r++) {
    let kl = 0;
    for (let v = 0; v < V; v++) {
      const la = a[r * V + v] - lseA[r];
      const lb = b[r * V + v] - lseB[r];
      kl += Math.exp(la) * (la - lb);
    }
    total += kl;
  }
  return total;
}

/** Run the downstream metric over all windows. */
export async function downstreamMetrics(input: DownstreamInput): Promise<DownstreamResult> {
  const { model, hook, tokens, seq } = input;
  if (seq <= 0 || tokens.length % seq !== 0 || tokens.length === 0) {
    throw new RangeError(`downstream: ${tokens.length} tokens are not whole windows of ${seq}`);
  }
  const per = input.windowsPerPass ?? 8;
  const d = model.config.nEmbd;
  const V = model.config.vocabSize;
  const name = hookName(hook);
  const windows = tokens.length / seq;
  const acc = { clean: 0, sae: 0, zero: 0, count: 0, kl: 0, klRows: 0 };
  for (let w0 = 0; w0 < windows; w0 += per) {
    const nw = Math.min(per, windows - w0);
    const tok = tokens.subarray(w0 * seq, (w0 + nw) * seq);
    const rows = nw * seq;
    const logits = Boolean(input.kl);
    const clean = await model.forward({ tokens: tok, seq, capture: [hook], loss: true, logits });
    const x = clean.activations.get(name)!;
    const xHat = await input.reconstruct(x, rows);
    const sae = await model.forward({
      tokens: tok,
      seq,
      splice: { hook, values: xHat },
      loss: true,
      logits,
    });
    const zero = await model.forward({
      tokens: tok,
      seq,
      splice: { hook, values: new Float32Array(rows * d) },
      loss: true,
    });
    const c = sumNll(clean.nll!), s = sumNll(sae.nll!), z = sumNll(zero.nll!);
    acc.clean += c.sum;
    acc.sae += s.sum;
    acc.zero += z.sum;
    acc.count += c.count;
    if (logits) {
      acc.kl += klSum(clean.logits!, clean.logsumexp!, sae.logits!, sae.logsumexp!, rows, V);
      acc.klRows += rows;
    }
  }
  const cleanCe = acc.clean / acc.count, saeCe = acc.sae / acc.count, zeroCe = acc.zero / acc.count;
  return {
    windows,
    seq,
    positions: acc.count,
    cleanCe,
    saeCe,
    zeroCe,
    ceIncrease: saeCe - cleanCe,
    ceRecovered: (zeroCe - saeCe) / (zeroCe - cleanCe),
    ...(input.kl ? { kl: acc.kl / acc.klRows } : {}),
  };
}
