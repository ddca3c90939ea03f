// adam: the optimiser step on the SAE parameters, then zeroing of the gradients for the next step.
//
// Order (arbor_sae_math "Optimiser step"): for decoder rows, (1) remove the gradient's component
// along the row, (2) Adam, (3) renormalise the row to unit L2 norm. encW and bDec get plain Adam.
// Adam: m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²; p -= lr · (m / bc1) / (sqrt(v / bc2) + eps),
// with bc1 = 1 - β1^t, bc2 = 1 - β2^t computed on the host (t starts at 1). Dense over all
// parameters: rows whose gradient is zero still decay their moments and move.
//
// Entry points:
//   adam_dense  bindings 0 p [len], 1 grad [len], 2 m [len], 3 v [len], 4 u Params.
//               One invocation updates one element (1-D grid wrapped into y: i = y·row_stride + x)
//               and sets grad to 0.
//   adam_rows   bindings 0 p [rows, cols], 1 grad, 2 m, 3 v, 4 u Params.
//               One workgroup owns one decoder row (wrapped like above): it computes g·p,
//               removes the parallel part, applies Adam, renormalises the row, zeroes grad.
//   adam_dense4, adam_rows4: the same on vec4 views (len, cols multiples of 4; u.len and
//               u.cols count vec4s), four elements per load — llvmpipe issues one load per lane.
//               Binding 5 pT: with ADAM_TEX, the parameters before the step from a matrix
//               texture (adam_dense4: u.cols = vec4s per texture row); a placeholder otherwise.

// WG must be a power of two (adam_rows halves it in its workgroup reduction).
override WG: u32 = 64;

struct Params {
  len: u32,
  rows: u32,
  cols: u32,
  row_stride: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  bc1: f32,
  bc2: f32,
  _p0: u32,
  _p1: u32,
}

@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<uniform> u: Params;

fn adam_one(i: u32, g: f32) -> f32 {
  let mi = u.beta1 * m[i] + (1.0 - u.beta1) * g;
  let vi = u.beta2 * v[i] + (1.0 - u.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  let pi = p[i] - u.lr * (mi / u.bc1) / (sqrt(vi / u.bc2) + u.eps);
  p[i] = pi;
  return pi;
}

@compute @workgroup_size(WG)
fn adam_dense(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * u.row_stride + gid.x;
  if (i >= u.len) { return; }
  adam_one(i, grad[i]);
  grad[i] = 0.0;
}

var<workgroup> red: array<f32, WG>;

// Sum `x` over the workgroup (tree reduction, fixed order); every invocation gets the result.
fn wg_sum(t: u32, x: f32) -> f32 {
  red[t] = x;
  workgroupBarrier();
  for (var off = WG / 2u; off > 0u; off /= 2u) {
    if (t < off) { red[t] += red[t + off]; }
    workgroupBarrier();
  }
  let s = red[0];
  workgroupBarrier();
  return s;
}

@compute @workgroup_size(WG)
fn adam_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let r = wg.y * u.row_stride + wg.x;
  if (r >= u.rows) { return; }
  let t = lid.x;
  let base = r * u.cols;
  var dot = 0.0;
  for (var j = t; j < u.cols; j += WG) { dot += grad[base + j] * p[base + j]; }
  let gp = wg_sum(t, dot);
  var sq = 0.0;
  for (var j = t; j < u.cols; j += WG) {
    let i = base + j;
    let pi = adam_one(i, grad[i] - gp * p[i]);
    grad[i] = 0.0;
    sq += pi * pi;
  }
  let norm = sqrt(wg_sum(t, sq));
  if (norm > 0.0) {
    for (var j = t; j < u.cols; j += WG) { p[base + j] = p[base + j] / norm; }
  }
}

@group(0) @binding(0) var<storage, read_write> p4: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> grad4: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> m4: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> v4: array<vec4f>;

@compute @workgroup_size(WG)
fn adam_dense4(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * u.row_stride + gid.x;
  if (i >= u.len) { return; }
  var p0: vec4f;
  if (ADAM_TEX) { p0 = p_tex4(i / u.cols, i % u.cols); } else { p0 = p4[i]; }
  adam_one4(i, grad4[i], p0);
  grad4[i] = vec4f(0.0);
}

// With ADAM_TEX, adam_rows4 reads the rows' parameters before the update from pT (binding 5, the
// matrix texture the forward copied them into: texel (j, r % TEX_ROWS) of layer r / TEX_ROWS),
// adam_dense4 likewise with row r = i / u.cols; a placeholder is bound otherwise.
override ADAM_TEX: bool = false;
const TEX_ROWS: u32 = 4096u;
@group(0) @binding(5) var p_t: texture_2d_array<f32>;

// vec4 j of row r of pT.
fn p_tex4(r: u32, j: u32) -> vec4f {
  return textureLoad(p_t, vec2i(i32(j), i32(r % TEX_ROWS)), i32(r / TEX_ROWS), 0);
}

// vec4 j of row r before the update (storage index i).
fn p_before4(i: u32, r: u32, j: u32) -> vec4f {
  if (ADAM_TEX) { return p_tex4(r, j); }
  return p4[i];
}

// adam_one on vec4s, with the parameter's value before the update given (p0).
fn adam_one4(i: u32, g: vec4f, p0: vec4f) -> vec4f {
  let mi = u.beta1 * m4[i] + (1.0 - u.beta1) * g;
  let vi = u.beta2 * v4[i] + (1.0 - u.beta2) * g * g;
  m4[i] = mi;
  v4[i] = vi;
  let pi = p0 - u.lr * (mi / u.bc1) / (sqrt(vi / u.bc2) + u.eps);
  p4[i] = pi;
  return pi;
}

@compute @workgroup_size(WG)
fn adam_rows4(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let r = wg.y * u.row_stride + wg.x;
  if (r >= u.rows) { return; }
  let t = lid.x;
  let base = r * u.cols;
  var gdot = 0.0;
  for (var j = t; j < u.cols; j += WG) { gdot += dot(grad4[base + j], p_before4(base + j, r, j)); }
  let gp = wg_sum(t, gdot);
  var sq = 0.0;
  for (var j = t; j < u.cols; j += WG) {
    let i = base + j;
    let p0 = p_before4(i, r, j);
    let pi = adam_one4(i, grad4[i] - gp * p0, p0);
    grad4[i] = vec4f(0.0);
    sq += dot(pi, pi);
  }
  let norm = sqrt(wg_sum(t, sq));
  if (norm > 0.0) {
    for (var j = t; j < u.cols; j += WG) { p4[base + j] = p4[base + j] / norm; }
  }
}
