// lm_bias: add a per-column bias to a row-major matrix, in place: x[r, c] += bias[c]
// (the bias of a linear layer whose product came from the shared encoder GEMM, which has none).
//
// Bindings: 0 x    array<f32> [rows, cols] (read and overwritten)
//           1 bias array<f32> [cols]
//           2 u    Params     n = rows·cols, cols, row_stride
// One invocation updates one element. Grid: ceil(n / WG) workgroups, wrapped into y
// (index = y·row_stride + global x).

override WG: u32 = 256;

struct Params { n: u32, cols: u32, row_stride: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<uniform> u: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * u.row_stride + g.x;
  if (i >= u.n) { return; }
  x[i] = x[i] + bias[i % u.cols];
}
