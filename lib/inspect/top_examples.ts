/**
 * The M highest activations of every feature and the rows they occurred on, kept in
 * fixed arrays [n, M] while codes stream by (memory n·M, independent of the token count).
 * Ties keep the earlier row.
 */

/** One activating example: dataset row and activation value. */
export interface Example {
  row: number;
  value: number;
}

/** Bounded top-M examples per feature. */
export class TopExamples {
  readonly #rows: Int32Array;
  readonly #vals: Float32Array;
  readonly #len: Uint16Array;

  /** Room for `m` examples of each of `n` features. */
  constructor(readonly n: number, readonly m: number) {
    this.#rows = new Int32Array(n * m);
    this.#vals = new Float32Array(n * m);
    this.#len = new Uint16Array(n);
  }

  /** Offer feature `f` firing with `value` on `row`. */
  offer(f: number, row: number, value: number): void {
    const base = f * this.m;
    const len = this.#len[f];
    if (len < this.m) {
      this.#rows[base + len] = row;
      this.#vals[base + len] = value;
      this.#len[f] = len + 1;
      return;
    }
    let lo = 0;
    for (let i = 1; i < this.m; i++) if (this.#vals[base + i] < this.#vals[base + lo]) lo = i;
    if (value > this.#vals[base + lo]) {
      this.#rows[base + lo] = row;
      this.#vals[base + lo] = value;
    }
  }

  /** The kept examples of `f`, highest first (ties: lower row first). */
  get(f: number): Example[] {
    const base = f * this.m;
    const out: Example[] = [];
    for (let i = 0; i < this.#len[f]; i++) {
      out.push({ row: this.#rows[base + i], value: this.#vals[base + i] });
    }
    return out.sort((a, b) => b.value - a.value || a.row - b.row);
  }
}
