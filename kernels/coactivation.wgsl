// coactivation: co-activation statistics of a requested set of parent features with
// every feature, accumulated over token batches of sparse codes (lib/eval/coactivation.ts;
// TS twin: coactivationReference). Only an [m, n] block for the m requested parents
// exists, never an n×n matrix.
//
// Bindings: 0 idx       array<u32>  [rows*k]  feature per code slot (0xFFFFFFFF = unused)
//           1 val       array<f32>  [rows*k]  activation per slot
//           2 parents   array<u32>  [m]       requested parent feature ids
//           3 count     array<u32>  [m*n]     += tokens where parent p and feature c both fire
//           4 prod      array<f32>  [m*n]     += Σ a_p·a_c over those tokens
//           5 parentSq  array<f32>  [m*n]     += Σ a_p² over those tokens
//           6 u         Params      rows, k, n, m, fire (firing threshold, 1e-3)
// One workgroup owns one parent (workgroup id x = position in `parents`) and walks the
// rows in order: its invocations find the parent's value in the row, then each handles
// some slots of the row and adds into row `pi` of the outputs. A feature occupies at
// most one slot per row (data contract), so the slots of a row never collide, and only
// this workgroup writes row `pi`: no atomics, and sums are added in token order, so
// results are deterministic. Grid: m workgroups in x (host chunks m ≤ 65535).

override WG: u32 = 64;

struct Params { rows: u32, k: u32, n: u32, m: u32, fire: f32 }

@group(0) @binding(0) var<storage, read> idx: array<u32>;
@group(0) @binding(1) var<storage, read> val: array<f32>;
@group(0) @binding(2) var<storage, read> parents: array<u32>;
@group(0) @binding(3) var<storage, read_write> count: array<u32>;
@group(0) @binding(4) var<storage, read_write> prod: array<f32>;
@group(0) @binding(5) var<storage, read_write> parentSq: array<f32>;
@group(0) @binding(6) var<uniform> u: Params;

var<workgroup> parentVal: f32;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let pi = wg.x;
  if (pi >= u.m) { return; }
  let p = parents[pi];
  for (var b = 0u; b < u.rows; b++) {
    let row = b * u.k;
    if (lid == 0u) { parentVal = 0.0; }
    workgroupBarrier();
    for (var s = lid; s < u.k; s += WG) {
      if (idx[row + s] == p) { parentVal = val[row + s]; }
    }
    let ap = workgroupUniformLoad(&parentVal);
    if (ap > u.fire) {
      for (var s = lid; s < u.k; s += WG) {
        let c = idx[row + s];
        let a = val[row + s];
        if (c != p && c < u.n && a > u.fire) {
          let o = pi * u.n + c;
          count[o] += 1u;
          prod[o] += ap * a;
          parentSq[o] += ap * ap;
        }
      }
    }
    workgroupBarrier();
  }
}
