/**
 * Sparse codes as the evaluation metrics see them (data contract of the SAE engine):
 * fixed slots per token row, `idx [rows, k]` u32 and `val [rows, k]` f32, an unused
 * slot has idx = 0xFFFFFFFF and val = 0. Also the per-feature firing statistics that
 * several metrics share (counts, sums, maxima), accumulated batch by batch.
 */

/** Index of an unused code slot (data contract). */
export const UNUSED_SLOT = 0xffffffff;

/** A feature "fires" on a token when its value exceeds this (ref: tree-sae, 1e-3). */
export const FIRE_THRESHOLD = 1e-3;

/** One batch of sparse codes: `rows` tokens × `k` slots, row-major. */
export interface SparseCodes {
  /** Feature index per slot [rows*k]; UNUSED_SLOT marks an empty slot. */
  idx: Uint32Array;
  /** Activation per slot [rows*k]; a slot fires when val > FIRE_THRESHOLD. */
  val: Float32Array;
  /** Number of token rows. */
  rows: number;
  /** Slots per row. */
  k: number;
}

/** Check a codes batch's shapes against `n` features; throws RangeError naming the field. */
export function checkCodes(codes: SparseCodes, n: number): void {
  const { idx, val, rows, k } = codes;
  if (idx.length !== rows * k || val.length !== rows * k) {
    throw new RangeError(
      `codes: idx/val have ${idx.length}/${val.length} entries, expected rows*k = ${rows * k}`,
    );
  }
  for (let i = 0; i < idx.length; i++) {
    if (idx[i] !== UNUSED_SLOT && idx[i] >= n) {
      throw new RangeError(`codes: idx[${i}] = ${idx[i]} is not a feature of a ${n}-feature SAE`);
    }
  }
}

/** Concatenate code batches with the same k into one (for metrics that need all tokens). */
export function concatCodes(batches: SparseCodes[]): SparseCodes {
  if (batches.length === 0) {
    return { idx: new Uint32Array(0), val: new Float32Array(0), rows: 0, k: 0 };
  }
  const k = batches[0].k;
  const rows = batches.reduce((s, b) => s + b.rows, 0);
  const idx = new Uint32Array(rows * k);
  const val = new Float32Array(rows * k);
  let off = 0;
  for (const b of batches) {
    if (b.k !== k) {
      throw new RangeError(`codes: batches have different slot counts (${b.k} vs ${k})`);
    }
    idx.set(b.idx, off);
    val.set(b.val, off);
    off += b.rows * k;
  }
  return { idx, val, rows, k };
}

/** Per-feature firing statistics over all tokens seen (f64 accumulators). */
export class FeatureStats {
  /** Tokens seen. */
  tokens = 0;
  /** Tokens on which each feature fired [n]. */
  readonly count: Float64Array;
  /** Sum of each feature's activation over the tokens it fired on [n]. */
  readonly sum: Float64Array;
  /** Sum of squared activations [n]. */
  readonly sumSq: Float64Array;
  /** Largest activation seen [n] (0 if it never fired). */
  readonly max: Float64Array;

  /** Empty statistics for `n` features. */
  constructor(readonly n: number) {
    this.count = new Float64Array(n);
    this.sum = new Float64Array(n);
    this.sumSq = new Float64Array(n);
    this.max = new Float64Array(n);
  }

  /** Add one batch of codes. */
  add(codes: SparseCodes): void {
    const { idx, val } = codes;
    for (let s = 0; s < idx.length; s++) {
      const v = val[s];
      if (idx[s] === UNUSED_SLOT || !(v > FIRE_THRESHOLD)) continue;
      const f = idx[s];
      this.count[f] += 1;
      this.sum[f] += v;
      this.sumSq[f] += v * v;
      if (v > this.max[f]) this.max[f] = v;
    }
    this.tokens += codes.rows;
  }

  /** Firing density of every feature: fraction of tokens it fired on [n]. */
  density(): Float64Array {
    const out = new Float64Array(this.n);
    if (this.tokens > 0) { for (let f = 0; f < this.n; f++) out[f] = this.count[f] / this.tokens; }
    return out;
  }
}

/** Feature statistics of a list of code batches. */
export function featureStats(batches: SparseCodes[], n: number): FeatureStats {
  const s = new FeatureStats(n);
  for (const b of batches) s.add(b);
  return s;
}
