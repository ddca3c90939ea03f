// lm_gelu: GPT-2's tanh-approximated GELU ("gelu_new"), in place:
//   y = 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))
//
// Bindings: 0 x array<f32> [n] (read and overwritten)
//           1 u Params     n, row_stride
// One invocation transforms one element. The tanh argument is clamped to ±10 (tanh(±10) is ±1 in
// f32) so drivers that compute tanh from exp cannot overflow to NaN.
// Grid: ceil(n / WG) workgroups, wrapped into y (index = y·row_stride + global x).

override WG: u32 = 256;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_CUBIC: f32 = 0.044715;

struct Params { n: u32, row_stride: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> u: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * u.row_stride + g.x;
  if (i >= u.n) { return; }
  let v = x[i];
  let z = clamp(SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v), -10.0, 10.0);
  x[i] = 0.5 * v * (1.0 + tanh(z));
}
