/**
 * Dead-feature bookkeeping: tokens since each feature last fired (val > FIRE_THRESHOLD),
 * and per-feature fire counts of a batch (the Tree SAE's capacity and eligibility use them).
 * Legend: B = tokens, n = features, K = slots per row.
 */
import { FIRE_THRESHOLD, UNUSED_SLOT } from "./constants.ts";
import type { Codes } from "./select.ts";

/** Tokens of the batch each feature fired on, u32 [n] (a feature appears at most once per row). */
export function fireCounts(codes: Codes, B: number, n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let t = 0; t < B * codes.K; t++) {
    const f = codes.idx[t];
    if (f !== UNUSED_SLOT && codes.val[t] > FIRE_THRESHOLD) out[f]++;
  }
  return out;
}

/**
 * In place: tokensSinceFired[f] += B (saturating at 2^32 − 1), then 0 for every feature
 * with a nonzero fire count in this batch.
 */
export function updateDeadCounters(tokensSinceFired: Uint32Array, fired: Uint32Array, B: number) {
  for (let f = 0; f < tokensSinceFired.length; f++) {
    tokensSinceFired[f] = fired[f] > 0 ? 0 : Math.min(0xffffffff, tokensSinceFired[f] + B);
  }
}

/** dead [n]: 1 where tokensSinceFired ≥ deadTokens. */
export function deadMask(tokensSinceFired: Uint32Array, deadTokens: number): Uint8Array {
  const out = new Uint8Array(tokensSinceFired.length);
  for (let f = 0; f < out.length; f++) out[f] = tokensSinceFired[f] >= deadTokens ? 1 : 0;
  return out;
}
