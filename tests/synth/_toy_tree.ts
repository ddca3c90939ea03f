/** Test fixture: the toy tree of the Matryoshka-SAE experiments (noanabeshima/matryoshka-saes tree.json). */
import type { TreeNodeJson } from "../../lib/synth/tree.ts";

/** The toy tree of the Matryoshka-SAE experiments: 3 exclusive groups of 3 (+ "none") and 8 singles. */
export function toyTree(): TreeNodeJson {
  const group = (): TreeNodeJson => ({
    active_prob: 0.15,
    is_read_out: true,
    mutually_exclusive_children: true,
    children: [
      { active_prob: 0.2, is_read_out: true, mutually_exclusive_children: false, children: [] },
      { active_prob: 0.2, is_read_out: true, mutually_exclusive_children: false, children: [] },
      { active_prob: 0.2, is_read_out: true, mutually_exclusive_children: false, children: [] },
      { active_prob: 0.4, is_read_out: false },
    ],
  });
  const single = (): TreeNodeJson => ({
    active_prob: 0.05,
    is_read_out: true,
    mutually_exclusive_children: false,
  });
  return {
    active_prob: 1.0,
    is_read_out: false,
    children: [group(), group(), group(), ...Array.from({ length: 8 }, single)],
    mutually_exclusive_children: false,
  };
}
