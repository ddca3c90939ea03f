// lm_layernorm: y[r, :] = (x[r, :] - mean) / sqrt(var + eps) * gamma + beta, per row (GPT-2's
// ln_1, ln_2, ln_f). Variance is the biased one (divide by d), as torch's layer_norm.
//
// Bindings: 0 x     array<f32> [rows, d]
//           1 gamma array<f32> [d]
//           2 beta  array<f32> [d]
//           3 y     array<f32> [rows, d]
//           4 u     Params     rows, d, eps (f32)
// One workgroup normalises one row: its WG invocations stride over the d columns, and two
// tree reductions in workgroup memory give the mean, then the mean squared deviation (two passes
// for accuracy). Grid: rows workgroups in x (wrapped into y past 65535: row = y·65535 + x).

override WG: u32 = 64;

struct Params { rows: u32, d: u32, eps: f32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> u: Params;

var<workgroup> part: array<f32, WG>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
  part[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  let total = part[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * 65535u + wg.x;
  if (row >= u.rows) { return; }  // uniform per workgroup, so barriers stay uniform
  let base = row * u.d;
  var s = 0.0;
  for (var c = lid; c < u.d; c += WG) { s += x[base + c]; }
  let mean = reduce_sum(lid, s) / f32(u.d);
  var q = 0.0;
  for (var c = lid; c < u.d; c += WG) { let t = x[base + c] - mean; q += t * t; }
  let inv = 1.0 / sqrt(reduce_sum(lid, q) / f32(u.d) + u.eps);
  for (var c = lid; c < u.d; c += WG) {
    y[base + c] = (x[base + c] - mean) * inv * gamma[c] + beta[c];
  }
}
