// dead: per-feature fire counts of a batch and the tokens-since-fired counters (dead tracking).
// A feature fires on a token when its code value is > FIRE_THRESHOLD (1e-3, ref).
//
// Entry points:
//   fire_count   bindings 0 idx u32 [B, K], 1 val f32 [B, K], 2 counts atomic u32 [n], 3 active
//                atomic u32 [n] (both zeroed by the host before the step), 4 u Params.
//                One invocation looks at one slot: counts[idx] += 1 when it fires (val > 1e-3),
//                active[idx] += 1 when val > 0 (the L0 statistic).
//                Slot order does not matter: integer atomics give the same counts every time.
//   dead_update  bindings 0 counts u32 [n], 1 since u32 [n], 2 u Params.
//                One invocation updates one feature: since = counts > 0 ? 0 : min(since + B, 2^32 - 1).
//   dead_mask    bindings 0 since u32 [n], 1 dead u32 [n], 2 u Params (tokens = the dead threshold,
//                _p = 1 when the threshold exceeds 2^32 − 1).
//                One invocation per feature: dead = since >= threshold ? 1 : 0 (the AuxK candidates of
//                the next step, computed on the GPU so the host need not wait for the counters).
// Grids are 1-D, wrapped into y: i = y·row_stride + x.

override WG: u32 = 64;

const EMPTY: u32 = 0xFFFFFFFFu;
const FIRE_THRESHOLD: f32 = 1e-3;

struct Params {
  // Slots in the batch (B·K) for fire_count, features (n) for dead_update.
  len: u32,
  // Tokens in the batch (B): added to every counter. dead_mask: the dead threshold.
  tokens: u32,
  row_stride: u32,
  _p: u32,
}

@group(0) @binding(0) var<storage, read> fc_idx: array<u32>;
@group(0) @binding(1) var<storage, read> fc_val: array<f32>;
@group(0) @binding(2) var<storage, read_write> fc_counts: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> fc_active: array<atomic<u32>>;
@group(0) @binding(4) var<uniform> fc_p: Params;

@compute @workgroup_size(WG)
fn fire_count(@builtin(global_invocation_id) g: vec3u) {
  let e = g.y * fc_p.row_stride + g.x;
  if (e >= fc_p.len) { return; }
  let f = fc_idx[e];
  if (f == EMPTY) { return; }
  let v = fc_val[e];
  // The TS reference compares the f32 value with the double 1e-3; f32(1e-3) rounds up, so
  // "v > 1e-3 in double" is "v >= f32(1e-3)" here.
  if (v >= FIRE_THRESHOLD) { atomicAdd(&fc_counts[f], 1u); }
  if (v > 0.0) { atomicAdd(&fc_active[f], 1u); }
}

@group(0) @binding(0) var<storage, read> du_counts: array<u32>;
@group(0) @binding(1) var<storage, read_write> du_since: array<u32>;
@group(0) @binding(2) var<uniform> du_p: Params;

@compute @workgroup_size(WG)
fn dead_update(@builtin(global_invocation_id) g: vec3u) {
  let f = g.y * du_p.row_stride + g.x;
  if (f >= du_p.len) { return; }
  if (du_counts[f] > 0u) {
    du_since[f] = 0u;
  } else {
    let s = du_since[f];
    // Saturate instead of wrapping so a long-dead feature stays dead.
    du_since[f] = select(s + du_p.tokens, EMPTY, s > EMPTY - du_p.tokens);
  }
}

@group(0) @binding(0) var<storage, read> dm_since: array<u32>;
@group(0) @binding(1) var<storage, read_write> dm_dead: array<u32>;
@group(0) @binding(2) var<uniform> dm_p: Params;

@compute @workgroup_size(WG)
fn dead_mask(@builtin(global_invocation_id) g: vec3u) {
  let f = g.y * dm_p.row_stride + g.x;
  if (f >= dm_p.len) { return; }
  // _p = 1: the threshold is above every counter value (2^32 − 1), nothing is dead.
  dm_dead[f] = select(0u, 1u, dm_p._p == 0u && dm_since[f] >= dm_p.tokens);
}
