/** Nearest features by decoder cosine: the dictionary directions most similar to a feature's. */
import { unitRows } from "../eval/probes.ts";

/** A neighbour and its cosine. */
export interface Neighbour {
  feature: number;
  cosine: number;
}

/** Unit decoder rows, normalised once and queried per feature. */
export class DecoderNeighbours {
  readonly #unit: Float32Array;
  readonly #n: number;

  /** decW [n, d] decoder rows. */
  constructor(decW: Float32Array, readonly d: number) {
    this.#n = decW.length / d;
    this.#unit = unitRows(decW, this.#n, d);
  }

  /** The `k` other features with the highest cosine to `f` (ties: lower index). */
  nearest(f: number, k: number): Neighbour[] {
    const d = this.d;
    const u = this.#unit;
    const out: Neighbour[] = [];
    for (let g = 0; g < this.#n; g++) {
      if (g === f) continue;
      let s = 0;
      for (let j = 0; j < d; j++) s += u[f * d + j] * u[g * d + j];
      out.push({ feature: g, cosine: s });
    }
    return out.sort((a, b) => b.cosine - a.cosine || a.feature - b.feature).slice(0, k);
  }
}
