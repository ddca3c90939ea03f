// threshold_filter: BatchTopK inference — keep only the code slots whose value exceeds θ.
//
// Bindings: 0 idx  array<u32>  [B, K]  slot feature indices (0xFFFFFFFF = unused), read-write
//           1 val  array<f32>  [B, K]  slot values, read-write
//           2 u    Params      total = B·K slots, theta = θ (f32 bits), stride = wrapped-grid x·WG
// Runs after a per-row top-K (descending values), so the slots that survive form a prefix of
// each row, as in the reference's selectThreshold. One invocation clears one slot if val ≤ θ.

override WG: u32 = 256;

struct Params { total: u32, theta: f32, stride: u32 }

@group(0) @binding(0) var<storage, read_write> idx: array<u32>;
@group(0) @binding(1) var<storage, read_write> val: array<f32>;
@group(0) @binding(2) var<uniform> u: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * u.stride + g.x;
  if (i >= u.total) { return; }
  if (!(val[i] > u.theta)) {
    idx[i] = 0xFFFFFFFFu;
    val[i] = 0.0;
  }
}
