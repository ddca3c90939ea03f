/**
 * A small binary max-heap of integer ids keyed by (primary desc, secondary asc, id asc), on
 * typed arrays so Algorithm 1 over ~6k parents allocates nothing per operation. The full key
 * order makes pops deterministic: equal primaries go to the smaller secondary, then smaller id.
 */
export class MaxHeap {
  #primary: Float64Array;
  #secondary: Float64Array;
  #ids: Int32Array;
  #size = 0;

  /** An empty heap holding at most `capacity` entries. */
  constructor(capacity: number) {
    this.#primary = new Float64Array(capacity);
    this.#secondary = new Float64Array(capacity);
    this.#ids = new Int32Array(capacity);
  }

  /** Number of entries. */
  get size(): number {
    return this.#size;
  }

  /** Id of the top entry (heap must be non-empty). */
  peekId(): number {
    return this.#ids[0];
  }

  /** Append without restoring the heap order; call `heapify()` after a batch of these. */
  pushUnordered(primary: number, secondary: number, id: number): void {
    const i = this.#size++;
    this.#primary[i] = primary;
    this.#secondary[i] = secondary;
    this.#ids[i] = id;
  }

  /** Restore the heap order in O(size) (Floyd). */
  heapify(): void {
    for (let i = (this.#size >> 1) - 1; i >= 0; i--) this.#siftDown(i);
  }

  /** Insert an entry in O(log size). */
  push(primary: number, secondary: number, id: number): void {
    this.pushUnordered(primary, secondary, id);
    this.#siftUp(this.#size - 1);
  }

  /** Remove the top entry and return its id, in O(log size) (heap must be non-empty). */
  pop(): number {
    const top = this.#ids[0];
    const last = --this.#size;
    if (last > 0) {
      this.#primary[0] = this.#primary[last];
      this.#secondary[0] = this.#secondary[last];
      this.#ids[0] = this.#ids[last];
      this.#siftDown(0);
    }
    return top;
  }

  /** Replace the top entry's keys (same id or another) and restore order: a pop + push in one sift. */
  replaceTop(primary: number, secondary: number, id: number): void {
    this.#primary[0] = primary;
    this.#secondary[0] = secondary;
    this.#ids[0] = id;
    this.#siftDown(0);
  }

  // Whether entry a should sit above entry b.
  #above(a: number, b: number): boolean {
    const pa = this.#primary[a], pb = this.#primary[b];
    if (pa !== pb) return pa > pb;
    const sa = this.#secondary[a], sb = this.#secondary[b];
    if (sa !== sb) return sa < sb;
    return this.#ids[a] < this.#ids[b];
  }

  #swap(a: number, b: number): void {
    const p = this.#primary[a], s = this.#secondary[a], id = this.#ids[a];
    this.#primary[a] = this.#primary[b];
    this.#secondary[a] = this.#secondary[b];
    this.#ids[a] = this.#ids[b];
    this.#primary[b] = p;
    this.#secondary[b] = s;
    this.#ids[b] = id;
  }

  #siftUp(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#above(i, parent)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #siftDown(i: number): void {
    const n = this.#size;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      let best = l;
      if (l + 1 < n && this.#above(l + 1, l)) best = l + 1;
      if (!this.#above(best, i)) return;
      this.#swap(i, best);
      i = best;
    }
  }
}
