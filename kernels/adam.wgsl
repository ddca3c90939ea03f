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
//               Bindings 5-8 pT, gT, mT, vT: with ADAM_TEX, every value before the step from
//               textures, over one chunk of rows (see ADAM_TEX below); placeholders otherwise.

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
  row0: u32,
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

// With ADAM_TEX the vec4 entries read every value before the update through textures and only
// store to the buffers (llvmpipe gathers a texel fetch across its SIMD lanes but loops a storage
// load over them; its stores are cheap): the parameters from pT (binding 5, the matrix texture the
// forward copied them into: texel (j, r % TEX_ROWS) of layer r / TEX_ROWS), and grad, m, v of the
// chunk of rows [u.row0, u.row0 + u.rows) from gT, mT, vT (bindings 6-8, copied there by the host
// before the dispatch: chunk row c at texel (j, c % TEX_ROWS) of layer c / TEX_ROWS). Placeholders
// are bound otherwise.
override ADAM_TEX: bool = false;
const TEX_ROWS: u32 = 4096u;
@group(0) @binding(5) var p_t: texture_2d_array<f32>;
@group(0) @binding(6) var g_t: texture_2d_array<f32>;
@group(0) @binding(7) var m_t: texture_2d_array<f32>;
@group(0) @binding(8) var v_t: texture_2d_array<f32>;

// vec4 j of row r (chunk row c under ADAM_TEX), storage index i: the values before the update.
struct Before4 { p: vec4f, g: vec4f, m: vec4f, v: vec4f }

fn before4(i: u32, r: u32, j: u32) -> Before4 {
  if (ADAM_TEX) {
    let c = r - u.row0;
    let at = vec2i(i32(j), i32(c % TEX_ROWS));
    let l = i32(c / TEX_ROWS);
    return Before4(
      textureLoad(p_t, vec2i(i32(j), i32(r % TEX_ROWS)), i32(r / TEX_ROWS), 0),
      textureLoad(g_t, at, l, 0),
      textureLoad(m_t, at, l, 0),
      textureLoad(v_t, at, l, 0),
    );
  }
  return Before4(p4[i], grad4[i], m4[i], v4[i]);
}

struct After4 { p: vec4f, m: vec4f, v: vec4f }

// adam_one on vec4s, from the values before (b) and the gradient to apply (g); stores nothing.
fn adam_new4(b: Before4, g: vec4f) -> After4 {
  let mi = u.beta1 * b.m + (1.0 - u.beta1) * g;
  let vi = u.beta2 * b.v + (1.0 - u.beta2) * g * g;
  return After4(b.p - u.lr * (mi / u.bc1) / (sqrt(vi / u.bc2) + u.eps), mi, vi);
}

// Store an update at storage index i (parameters divided by norm) and zero the gradient.
fn store4(i: u32, a: After4, norm: f32) {
  m4[i] = a.m;
  v4[i] = a.v;
  p4[i] = a.p / norm;
  grad4[i] = vec4f(0.0);
}

// Under ADAM_TEX u.len counts the chunk's vec4s, element k of the chunk being row u.row0 + k / u.cols.
@compute @workgroup_size(WG)
fn adam_dense4(@builtin(global_invocation_id) gid: vec3u) {
  let k = gid.y * u.row_stride + gid.x;
  if (k >= u.len) { return; }
  var i = k;
  var r = 0u;
  var j = 0u;
  if (ADAM_TEX) {
    r = u.row0 + k / u.cols;
    j = k % u.cols;
    i = r * u.cols + j;
  }
  let b = before4(i, r, j);
  store4(i, adam_new4(b, b.g), 1.0);
}

// Rows u.row0 + (0 .. u.rows) (u.row0 = 0 without ADAM_TEX), one workgroup each.
@compute @workgroup_size(WG)
fn adam_rows4(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let rc = wg.y * u.row_stride + wg.x;
  if (rc >= u.rows) { return; }
  let r = u.row0 + rc;
  let t = lid.x;
  let base = r * u.cols;
  var gdot = 0.0;
  for (var j = t; j < u.cols; j += WG) {
    let b = before4(base + j, r, j);
    gdot += dot(b.g, b.p);
  }
  let gp = wg_sum(t, gdot);
  var sq = 0.0;
  for (var j = t; j < u.cols; j += WG) {
    let b = before4(base + j, r, j);
    let a = adam_new4(b, b.g - gp * b.p);
    // From storage the row is stored now and rescaled below; from textures it is recomputed
    // below instead (reading back p4 would be a storage load).
    if (!ADAM_TEX) { store4(base + j, a, 1.0); }
    sq += dot(a.p, a.p);
  }
  let norm = sqrt(wg_sum(t, sq));
  let s = select(1.0, norm, norm > 0.0);
  for (var j = t; j < u.cols; j += WG) {
    let i = base + j;
    if (ADAM_TEX) {
      let b = before4(i, r, j);
      store4(i, adam_new4(b, b.g - gp * b.p), s);
    } else if (norm > 0.0) {
      p4[i] = p4[i] / norm;
    }
  }
}
