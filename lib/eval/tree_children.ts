/**
 * Children of every feature in a Tree SAE's structure (paper §4: allocation vectors a_l).
 * parents[l] [s_l] i32 holds, for feature i of layer l, its parent's global index in
 * [0, o_l), or o_l (= Σ_{t<l} s_t) for the root; layer 0's entries are all root.
 */

/** Map parent → its direct children (global ids), in layer order then index order; root children omitted. */
export function treeChildren(layerSizes: number[], parents: Int32Array[]): Map<number, number[]> {
  if (parents.length !== layerSizes.length) {
    throw new RangeError(
      `tree: ${parents.length} parent arrays for ${layerSizes.length} layers (one per layer, layer 0 all root)`,
    );
  }
  const out = new Map<number, number[]>();
  let offset = 0;
  layerSizes.forEach((size, l) => {
    const arr = parents[l];
    if (arr.length !== size) {
      throw new RangeError(
        `tree: parents of layer ${l} have ${arr.length} entries, expected ${size}`,
      );
    }
    for (let i = 0; i < size; i++) {
      const p = arr[i];
      if (p < 0 || p > offset) {
        throw new RangeError(
          `tree: parent ${p} of layer ${l} feature ${i} is outside [0, ${offset}]`,
        );
      }
      if (p === offset) continue; // root
      let list = out.get(p);
      if (!list) out.set(p, list = []);
      list.push(offset + i);
    }
    offset += size;
  });
  return out;
}
