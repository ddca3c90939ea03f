// standardize: per-token standardisation of activations and its inverse (Arbor SAE contract).
//
// Entry `standardize` — xs = (x - mean_b) / (std_b + STD_EPS), mean/std over the d columns of a row.
//   Bindings: 0 x    array<f32>  [B, d]   raw activations (row-major)
//             1 xs   array<f32>  [B, d]   standardised output
//             2 mean array<f32>  [B]      per-row mean
//             3 std  array<f32>  [B]      per-row std (population, /d)
//             4 u    Params
//   One workgroup standardises one row: its WG invocations sum strided columns in a fixed order,
//   then a fixed-shape tree reduction in workgroup memory (deterministic, no atomics). Two passes
//   (mean, then squared deviations) as the reference does. Grid: rows in x, wrapped into y past
//   `row_stride` workgroups.
//
// Entry `standardize4` — the same on vec4 views when d % 4 == 0 (sums in another order).
//
// Entry `unstandardize` — out = xhs * (std_b + STD_EPS) + mean_b (x̂ in the raw activation space).
//   Bindings: 0 xhs  array<f32>  [B, d]   standardised reconstruction
//             1 out  array<f32>  [B, d]
//             2 mean array<f32>  [B]
//             3 std  array<f32>  [B]
//             4 u    Params
//   One invocation per element; grid ceil(B*d / WG) in x, wrapped into y past `row_stride`
//   workgroups.

override WG: u32 = 64;

// STD_EPS = 1e-5 (ref: tue147/tree-sae standardisation; Arbor SAE contract).
const STD_EPS: f32 = 1e-5;

struct Params { B: u32, d: u32, row_stride: u32, pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> xs: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> stdv: array<f32>;
@group(0) @binding(4) var<uniform> u: Params;

var<workgroup> partial: array<f32, WG>;

// Tree-reduce `partial` into partial[0] in a fixed order; all invocations must call it.
fn reduce_partial(t: u32) -> f32 {
  var stride = WG / 2u;
  loop {
    if (stride == 0u) { break; }
    workgroupBarrier();
    if (t < stride) { partial[t] = partial[t] + partial[t + stride]; }
    stride = stride / 2u;
  }
  workgroupBarrier();
  let total = partial[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG)
fn standardize(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = w.y * u.row_stride + w.x;
  if (row >= u.B) { return; } // uniform across the workgroup
  let t = l.x;
  let base = row * u.d;
  var s = 0.0;
  for (var j = t; j < u.d; j += WG) { s += x[base + j]; }
  partial[t] = s;
  let m = reduce_partial(t) / f32(u.d);
  var q = 0.0;
  for (var j = t; j < u.d; j += WG) {
    let c = x[base + j] - m;
    q += c * c;
  }
  partial[t] = q;
  let sd = sqrt(reduce_partial(t) / f32(u.d));
  let inv = 1.0 / (sd + STD_EPS);
  for (var j = t; j < u.d; j += WG) { xs[base + j] = (x[base + j] - m) * inv; }
  if (t == 0u) {
    mean[row] = m;
    stdv[row] = sd;
  }
}

@group(0) @binding(0) var<storage, read> x4: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> xs4: array<vec4f>;

// standardize on vec4 views (d % 4 == 0): four columns per load (llvmpipe loops a storage load over
// its lanes, whatever the width); each invocation sums its vec4s, then the same tree.
@compute @workgroup_size(WG)
fn standardize4(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = w.y * u.row_stride + w.x;
  if (row >= u.B) { return; } // uniform across the workgroup
  let t = l.x;
  let d4 = u.d / 4u;
  let base = row * d4;
  var s = vec4f(0.0);
  for (var j = t; j < d4; j += WG) { s += x4[base + j]; }
  partial[t] = (s.x + s.y) + (s.z + s.w);
  let m = reduce_partial(t) / f32(u.d);
  var q = vec4f(0.0);
  for (var j = t; j < d4; j += WG) {
    let c = x4[base + j] - m;
    q += c * c;
  }
  partial[t] = (q.x + q.y) + (q.z + q.w);
  let sd = sqrt(reduce_partial(t) / f32(u.d));
  let inv = 1.0 / (sd + STD_EPS);
  for (var j = t; j < d4; j += WG) { xs4[base + j] = (x4[base + j] - m) * inv; }
  if (t == 0u) {
    mean[row] = m;
    stdv[row] = sd;
  }
}

@compute @workgroup_size(WG)
fn unstandardize(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let i = (w.y * u.row_stride + w.x) * WG + l.x;
  if (i >= u.B * u.d) { return; }
  let row = i / u.d;
  xs[i] = x[i] * (stdv[row] + STD_EPS) + mean[row];
}
