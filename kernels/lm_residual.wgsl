// lm_residual: the residual add of a transformer block, in place: x[i] += y[i].
//
// Bindings: 0 x array<f32> [n] residual stream (read and overwritten)
//           1 y array<f32> [n] block output (attn_out or mlp_out)
//           2 u Params     n, row_stride
// One invocation adds one element. Grid: ceil(n / WG) workgroups, wrapped into y
// (index = y·row_stride + global x).

override WG: u32 = 256;

struct Params { n: u32, row_stride: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<uniform> u: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * u.row_stride + g.x;
  if (i >= u.n) { return; }
  x[i] = x[i] + y[i];
}
