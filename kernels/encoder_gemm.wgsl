// encoder_gemm: pre = (xs − bDec) · encWᵀ for a chunk of rows (Arbor SAE contract).
//
//   pre[r, i] = Σ_j encW[i, j] · (xs[rowOffset + r, j] − bDec[j]),  r < rows, i < n.
//
// Bindings (all entries): 0 xs    array<f32 | vec4f>  [B, d]      standardised activations
//                         1 encW  array<f32 | vec4f>  [n, d]      encoder rows
//                         2 bDec  array<f32 | vec4f>  [d]
//                         3 pre   array<f32>          [rows, n]   output chunk (row r = batch row rowOffset + r)
//                         4 u     Params              rows, d, n, rowOffset
// Any rows, d, n: out-of-range rows/features are clamped on load and skipped on store.
//
// Variants (pick per adapter; see lib/sae/ops/encoder_gemm.ts):
//  * gemm_blocked / gemm_blocked_vec4 — register-blocked: one invocation owns a TM×TN block of
//    pre and streams its TM rows of xs and TN rows of encW straight from storage (vec4 loads when
//    d % 4 == 0). Best on llvmpipe/lavapipe, where workgroup-memory tiles are scalarised
//    (DESIGN §2). Workgroup = WGN × WGM invocations → tile (WGM·TM) rows × (WGN·TN) features.
//    Grid: (ceil(n / (WGN·TN)), ceil(rows / (WGM·TM))).
//  * gemm_tiled — classic shared-memory tiling for real GPUs: a 16×16 workgroup computes a
//    BM×BN = 64×64 tile, each invocation a 4×4 register block, stepping BK = 16 columns of d
//    through workgroup memory. Grid: (ceil(n / 64), ceil(rows / 64)).

override WGN: u32 = 16;
override WGM: u32 = 4;

// Register block of one invocation in the blocked variants (function arrays need const sizes).
const TM: u32 = 32u;
const TN: u32 = 32u;

struct Params { rows: u32, d: u32, n: u32, rowOffset: u32 }

@group(0) @binding(0) var<storage, read> xs: array<f32>;
@group(0) @binding(1) var<storage, read> encW: array<f32>;
@group(0) @binding(2) var<storage, read> bDec: array<f32>;
@group(0) @binding(0) var<storage, read> xs4: array<vec4f>;
@group(0) @binding(1) var<storage, read> encW4: array<vec4f>;
@group(0) @binding(2) var<storage, read> bDec4: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> pre: array<f32>;
@group(0) @binding(4) var<uniform> u: Params;

// Write the TM×TN block `acc` whose top-left is (r0, f0), skipping out-of-range entries.
fn store_block(acc: ptr<function, array<f32, 1024>>, r0: u32, f0: u32) {
  for (var m = 0u; m < TM; m++) {
    let r = r0 + m;
    if (r >= u.rows) { break; }
    for (var c = 0u; c < TN; c++) {
      let f = f0 + c;
      if (f < u.n) { pre[r * u.n + f] = (*acc)[m * TN + c]; }
    }
  }
}

@compute @workgroup_size(WGN, WGM)
fn gemm_blocked(@builtin(global_invocation_id) g: vec3u) {
  let f0 = g.x * TN;
  let r0 = g.y * TM;
  if (f0 >= u.n || r0 >= u.rows) { return; }
  var aBase: array<u32, TM>;
  var bBase: array<u32, TN>;
  for (var m = 0u; m < TM; m++) { aBase[m] = (u.rowOffset + min(r0 + m, u.rows - 1u)) * u.d; }
  for (var c = 0u; c < TN; c++) { bBase[c] = min(f0 + c, u.n - 1u) * u.d; }
  var acc: array<f32, 1024>;
  for (var j = 0u; j < u.d; j++) {
    let bj = bDec[j];
    var a: array<f32, TM>;
    var b: array<f32, TN>;
    for (var m = 0u; m < TM; m++) { a[m] = xs[aBase[m] + j] - bj; }
    for (var c = 0u; c < TN; c++) { b[c] = encW[bBase[c] + j]; }
    for (var m = 0u; m < TM; m++) {
      for (var c = 0u; c < TN; c++) { acc[m * TN + c] = fma(a[m], b[c], acc[m * TN + c]); }
    }
  }
  store_block(&acc, r0, f0);
}

@compute @workgroup_size(WGN, WGM)
fn gemm_blocked_vec4(@builtin(global_invocation_id) g: vec3u) {
  let f0 = g.x * TN;
  let r0 = g.y * TM;
  if (f0 >= u.n || r0 >= u.rows) { return; }
  let d4 = u.d / 4u;
  var aBase: array<u32, TM>;
  var bBase: array<u32, TN>;
  for (var m = 0u; m < TM; m++) { aBase[m] = (u.rowOffset + min(r0 + m, u.rows - 1u)) * d4; }
  for (var c = 0u; c < TN; c++) { bBase[c] = min(f0 + c, u.n - 1u) * d4; }
  var acc: array<f32, 1024>;
  for (var j = 0u; j < d4; j++) {
    let bj = bDec4[j];
    var a: array<vec4f, TM>;
    var b: array<vec4f, TN>;
    for (var m = 0u; m < TM; m++) { a[m] = xs4[aBase[m] + j] - bj; }
    for (var c = 0u; c < TN; c++) { b[c] = encW4[bBase[c] + j]; }
    for (var m = 0u; m < TM; m++) {
      for (var c = 0u; c < TN; c++) { acc[m * TN + c] += dot(a[m], b[c]); }
    }
  }
  store_block(&acc, r0, f0);
}

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> As: array<f32, 1024>; // [BK][BM]: centred xs tile, transposed
var<workgroup> Bs: array<f32, 1024>; // [BK][BN]: encW tile, transposed

@compute @workgroup_size(16, 16)
fn gemm_tiled(
  @builtin(workgroup_id) w: vec3u,
  @builtin(local_invocation_id) l: vec3u,
  @builtin(local_invocation_index) t: u32,
) {
  let rowTile = w.y * BM;
  let featTile = w.x * BN;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < u.d; k0 += BK) {
    // 256 invocations load 64×16 elements of each operand: 4 each, zero outside the matrix.
    for (var e = t; e < BM * BK; e += 256u) {
      let kk = e % BK;
      let mm = e / BK;
      let j = k0 + kk;
      let r = rowTile + mm;
      var av = 0.0;
      if (j < u.d && r < u.rows) { av = xs[(u.rowOffset + r) * u.d + j] - bDec[j]; }
      As[kk * BM + mm] = av;
      let f = featTile + mm;
      var bv = 0.0;
      if (j < u.d && f < u.n) { bv = encW[f * u.d + j]; }
      Bs[kk * BN + mm] = bv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var m = 0u; m < 4u; m++) { a[m] = As[kk * BM + l.y * 4u + m]; }
      for (var c = 0u; c < 4u; c++) { b[c] = Bs[kk * BN + l.x * 4u + c]; }
      for (var m = 0u; m < 4u; m++) {
        for (var c = 0u; c < 4u; c++) { acc[m * 4u + c] = fma(a[m], b[c], acc[m * 4u + c]); }
      }
    }
    workgroupBarrier();
  }
  for (var m = 0u; m < 4u; m++) {
    let r = rowTile + l.y * 4u + m;
    for (var c = 0u; c < 4u; c++) {
      let f = featTile + l.x * 4u + c;
      if (r < u.rows && f < u.n) { pre[r * u.n + f] = acc[m * 4u + c]; }
    }
  }
}
