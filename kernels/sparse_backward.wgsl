// sparse_backward: gradients of the SAE loss w.r.t. encW, decW and bDec, computed only over
// the active (row, slot) entries of the codes. SPARSE PATH: no dense [B, n] matrix is ever
// built; per-feature sums are a deterministic transpose of the entry lists (counting sort by
// feature index: per-row-block histogram -> prefix over blocks -> scan over features ->
// stable scatter), then per feature (and block of columns) one workgroup sums its entries in a
// fixed order.
//
// Shapes (f32 unless said, row-major). B rows, d width, n features, L levels, S = L + A sources.
//   xs      [B, d]      standardised batch          recon  [L, B, d]  level reconstructions x̂s_{≤l}
//   U       [S, B, d]   upstream gradient per source: U[l] = Σ_{t≥l} G_t (l < L, G_t = 2(x̂s_{≤t}-xs)/totalVar),
//                       U[L+a] = gA of aux layer a = 2·α·(ê - r)/denom
//   idx/val [B, Kseg]   one entry segment (main codes, or one aux layer's codes); idx u32, 0xFFFFFFFF = empty
//   layerEnds [L] u32   prefix ends o_l + s_l: a main entry of feature f feeds sources l >= layerOf(f)
//   scal    f32[]       GPU scalars from the forward losses (totalVar, aux denominators) at u.* indices
//   counts  u32 [nBlocks, n]   per row-block histogram, turned in place into per-block cursors
//   start   u32 [n + 1]        feature segment starts (exclusive scan of totals); start[n] = entries
//   sKey u32 / sVal f32 / sDpre f32 [E]   entries sorted by feature; sKey = source << 24 | row
//   gradDec, gradEnc [n, d]; sdpre [n] = Σ dpre of feature f; partial [nChunks, d]; gradB [d]
//
// An entry takes part iff its idx is valid and val > 0 (a selected slot with val 0 is inactive).
// Entry order inside a feature: row block, then segment (dispatch order), then row, then slot —
// fixed, so gradients are bitwise reproducible on one adapter.
//
// Entry points (one invocation does):
//   level_grad      one (b, j) element: the suffix sums U[l][b][j] over levels
//   aux_grad        one (b, j) element of U[src]
//                   (level_grad4, aux_grad4: four columns through vec4 views, d % 4 == 0)
//   entry_dpre      one entry: dpre = (val > 0) ? U[src, b] · decW[f] : 0 (entry_dpre4: vec4 loads;
//                   entry_dpre4x4: four entries of one row of a fixed-source segment, kseg % 4 == 0;
//                   entry_dpre_g8: eight invocations per entry, for real GPUs)
//   histogram       one entry: counts[block(b), f] += 1
//   block_prefix    one feature: exclusive prefix of counts over blocks, total into start[f]
//   scan_features   whole array (one workgroup): start = exclusive scan of totals
//   scatter         one workgroup per row block; rows in order, slots of a row in parallel
//   reduce_features one workgroup per (feature, block of WG columns); one column per invocation
//                   (reduce_features4: four columns per invocation through vec4 views;
//                   reduce_features16: sixteen columns, four vec4s, per invocation)
//   bdec_partial    one (chunk, j): Σ_{f in chunk} sdpre[f]·encW[f, j]
//   bdec_rows       one (row block q, j): rowPartial[q, j] = Σ_{b in block q} U[0, b, j] (BDEC_ROWS rows;
//                   blocks instead of one serial pass over all B rows keep B·d/BDEC_ROWS invocations busy)
//   bdec_final      one j: gradB[j] = Σ_q rowPartial[q, j] - Σ_chunks partial[c, j]
//
// Bindings (in order; the last is the Params uniform):
//   level_grad(4)     recon, xs, scal, U, p
//   aux_grad(4)       ehat, xs, recon, scal, U, p
//   entry_dpre(4|4x4|_g8) idx, val, U, decW, layerEnds, dpre [E], p; entry_dpre4 and entry_dpre4x4
//                     also 7 decT and 8 uT (decW and U as matrix textures, read when ED_TEX)
//   histogram         idx, val, counts, p
//   block_prefix      counts, start, p
//   scan_features     start, p
//   scatter           idx, val, dpre, counts (cursors), start, sKey, sVal, sDpre, layerEnds, p
//   reduce_features(4|16) start, sKey, sVal, sDpre, U, xs, bDec, gradDec, gradEnc, sdpre, p;
//                     reduce_features16 also 11 U and 12 xs as matrix textures (read when RF_TEX)
//   bdec_partial      sdpre, encW, partial, p, 4 encT (encW as a matrix texture, read when BQ_TEX)
//   bdec_rows         U, rowPartial, p
//   bdec_final        rowPartial, partial, gradB, p

override WG: u32 = 64;

const EMPTY: u32 = 0xFFFFFFFFu;
const SRC_FROM_LAYER: u32 = 0xFFFFFFFFu;

struct Params {
  B: u32,
  d: u32,
  n: u32,
  L: u32,
  // Width of the entry segment (slots per row).
  kseg: u32,
  // Source of this segment's entries, or SRC_FROM_LAYER for main codes.
  src: u32,
  rows_per_block: u32,
  n_blocks: u32,
  // Offset of this segment inside the flat dpre buffer.
  seg_base: u32,
  // Index of totalVar (level_grad) or the aux denominator (aux_grad) in scal.
  scal_idx: u32,
  // Level whose residual the aux layer reconstructs (aux_grad).
  level: u32,
  // Workgroups (or invocations) per grid row when a 1-D grid wraps into y.
  row_stride: u32,
  chunk: u32,
  n_chunks: u32,
  alpha: f32,
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> lg_recon: array<f32>;
@group(0) @binding(1) var<storage, read> lg_xs: array<f32>;
@group(0) @binding(2) var<storage, read> lg_scal: array<f32>;
@group(0) @binding(3) var<storage, read_write> lg_u: array<f32>;
@group(0) @binding(4) var<uniform> lg_p: Params;

@compute @workgroup_size(WG)
fn level_grad(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * lg_p.row_stride + g.x;
  let bd = lg_p.B * lg_p.d;
  if (i >= bd) { return; }
  let scale = 2.0 / lg_scal[lg_p.scal_idx];
  let x = lg_xs[i];
  var acc = 0.0;
  for (var l = i32(lg_p.L) - 1; l >= 0; l--) {
    acc += scale * (lg_recon[u32(l) * bd + i] - x);
    lg_u[u32(l) * bd + i] = acc;
  }
}

@group(0) @binding(0) var<storage, read> ag_ehat: array<f32>;
@group(0) @binding(1) var<storage, read> ag_xs: array<f32>;
@group(0) @binding(2) var<storage, read> ag_recon: array<f32>;
@group(0) @binding(3) var<storage, read> ag_scal: array<f32>;
@group(0) @binding(4) var<storage, read_write> ag_u: array<f32>;
@group(0) @binding(5) var<uniform> ag_p: Params;

@compute @workgroup_size(WG)
fn aux_grad(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * ag_p.row_stride + g.x;
  let bd = ag_p.B * ag_p.d;
  if (i >= bd) { return; }
  let denom = ag_scal[ag_p.scal_idx];
  var v = 0.0;
  // A zero denominator means the aux term is 0 (no dead feature or constant residual).
  if (denom > 0.0) {
    let r = ag_xs[i] - ag_recon[ag_p.level * bd + i];
    v = ag_p.alpha * 2.0 * (ag_ehat[i] - r) / denom;
  }
  ag_u[ag_p.src * bd + i] = v;
}

// level_grad4, aux_grad4: level_grad and aux_grad on vec4 views (d % 4 == 0), four elements per
// load (llvmpipe loops a storage load over its lanes, whatever the width): i counts vec4s of the
// [B, d] matrices; the same operations per element, so the same values.
@group(0) @binding(0) var<storage, read> lg_recon4: array<vec4f>;
@group(0) @binding(1) var<storage, read> lg_xs4: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> lg_u4: array<vec4f>;

@compute @workgroup_size(WG)
fn level_grad4(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * lg_p.row_stride + g.x;
  let bd = lg_p.B * lg_p.d / 4u;
  if (i >= bd) { return; }
  let scale = 2.0 / lg_scal[lg_p.scal_idx];
  let x = lg_xs4[i];
  var acc = vec4f(0.0);
  for (var l = i32(lg_p.L) - 1; l >= 0; l--) {
    acc += scale * (lg_recon4[u32(l) * bd + i] - x);
    lg_u4[u32(l) * bd + i] = acc;
  }
}

@group(0) @binding(0) var<storage, read> ag_ehat4: array<vec4f>;
@group(0) @binding(1) var<storage, read> ag_xs4: array<vec4f>;
@group(0) @binding(2) var<storage, read> ag_recon4: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> ag_u4: array<vec4f>;

@compute @workgroup_size(WG)
fn aux_grad4(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * ag_p.row_stride + g.x;
  let bd = ag_p.B * ag_p.d / 4u;
  if (i >= bd) { return; }
  let denom = ag_scal[ag_p.scal_idx];
  var v = vec4f(0.0);
  if (denom > 0.0) {
    let r = ag_xs4[i] - ag_recon4[ag_p.level * bd + i];
    v = ag_p.alpha * 2.0 * (ag_ehat4[i] - r) / denom;
  }
  ag_u4[ag_p.src * bd + i] = v;
}

fn layer_of(f: u32, ends_len: u32) -> u32 {
  var l = 0u;
  loop {
    if (l + 1u >= ends_len || f < ed_ends[l]) { break; }
    l++;
  }
  return l;
}

@group(0) @binding(0) var<storage, read> ed_idx: array<u32>;
@group(0) @binding(1) var<storage, read> ed_val: array<f32>;
@group(0) @binding(2) var<storage, read> ed_u: array<f32>;
@group(0) @binding(3) var<storage, read> ed_dec: array<f32>;
@group(0) @binding(4) var<storage, read> ed_ends: array<u32>;
@group(0) @binding(5) var<storage, read_write> ed_dpre: array<f32>;
@group(0) @binding(6) var<uniform> ed_p: Params;

@compute @workgroup_size(WG)
fn entry_dpre(@builtin(global_invocation_id) g: vec3u) {
  let e = g.y * ed_p.row_stride + g.x;
  if (e >= ed_p.B * ed_p.kseg) { return; }
  let f = ed_idx[e];
  let v = ed_val[e];
  var dp = 0.0;
  if (f != EMPTY && v > 0.0) {
    var src = ed_p.src;
    if (src == SRC_FROM_LAYER) { src = layer_of(f, ed_p.L); }
    let b = e / ed_p.kseg;
    let d = ed_p.d;
    let ub = (src * ed_p.B + b) * d;
    let wb = f * d;
    for (var j = 0u; j < d; j++) { dp += ed_u[ub + j] * ed_dec[wb + j]; }
  }
  ed_dpre[ed_p.seg_base + e] = dp;
}

// entry_dpre4: entry_dpre on vec4 views of U and decW (d a multiple of 4): four columns per load.
@group(0) @binding(2) var<storage, read> ed_u4: array<vec4f>;
@group(0) @binding(3) var<storage, read> ed_dec4: array<vec4f>;
// With ED_TEX the decoder rows come from decT and U's rows from uT (texel (j, r % TEX_ROWS) of layer
// r / TEX_ROWS holds row r's columns 4j..4j+3; lib/sae/ops/matrix_texture.ts): on llvmpipe a texel
// fetch is one gather for all SIMD lanes where a storage load loops over the lanes. The host binds
// placeholders for the bindings not read.
override ED_TEX: bool = false;
const TEX_ROWS: u32 = 4096u;
@group(0) @binding(7) var ed_dec_t: texture_2d_array<f32>;
@group(0) @binding(8) var ed_u_t: texture_2d_array<f32>;

// Texel coordinates (y, layer) of row r of a matrix texture.
fn tex_row(r: u32) -> vec2i {
  return vec2i(i32(r % TEX_ROWS), i32(r / TEX_ROWS));
}

// vec4 j of decoder row f, whose storage offset is w = f·d/4 and texture row t = tex_row(f).
fn ed_dec_at(w: u32, t: vec2i, j: u32) -> vec4f {
  if (ED_TEX) { return textureLoad(ed_dec_t, vec2i(i32(j), t.x), t.y, 0); }
  return ed_dec4[w + j];
}

// vec4 j of U's row at storage offset u (in vec4s, row start) and texture row t.
fn ed_u_at(u: u32, t: vec2i, j: u32) -> vec4f {
  if (ED_TEX) { return textureLoad(ed_u_t, vec2i(i32(j), t.x), t.y, 0); }
  return ed_u4[u + j];
}

@compute @workgroup_size(WG)
fn entry_dpre4(@builtin(global_invocation_id) g: vec3u) {
  let e = g.y * ed_p.row_stride + g.x;
  if (e >= ed_p.B * ed_p.kseg) { return; }
  let f = ed_idx[e];
  let v = ed_val[e];
  var dp = 0.0;
  if (f != EMPTY && v > 0.0) {
    var src = ed_p.src;
    if (src == SRC_FROM_LAYER) { src = layer_of(f, ed_p.L); }
    let b = e / ed_p.kseg;
    let d4 = ed_p.d / 4u;
    let ub = (src * ed_p.B + b) * d4;
    let wb = f * d4;
    let tb = tex_row(f);
    let ut = tex_row(src * ed_p.B + b);
    var acc = vec4f(0.0);
    for (var j = 0u; j < d4; j++) { acc += ed_u_at(ub, ut, j) * ed_dec_at(wb, tb, j); }
    dp = acc.x + acc.y + acc.z + acc.w;
  }
  ed_dpre[ed_p.seg_base + e] = dp;
}

// entry_dpre_g8: entry_dpre4 for real GPUs (d % 4 == 0, any segment). Eight invocations share one
// entry: lane l reads vec4s l, l + 8, l + 16, … of U's row and of decW[f], so the eight lanes read
// 128 contiguous bytes of each at a time (one invocation walking a whole 3 KB row, as entry_dpre4
// does, makes every load of a warp touch a different row); the eight partial sums are added in a
// fixed tree in workgroup memory (deterministic, but in another order than entry_dpre4).
// Grid: one workgroup per WG / 8 entries (WG a multiple of 8), 1-D wrapped into y past row_stride.
var<workgroup> g8_part: array<f32, WG>;

@compute @workgroup_size(WG)
fn entry_dpre_g8(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let e = (w.y * ed_p.row_stride + w.x) * (WG / 8u) + l.x / 8u;
  let lane = l.x % 8u;
  let inRange = e < ed_p.B * ed_p.kseg;
  var part = 0.0;
  if (inRange) {
    let f = ed_idx[e];
    if (f != EMPTY && ed_val[e] > 0.0) {
      var src = ed_p.src;
      if (src == SRC_FROM_LAYER) { src = layer_of(f, ed_p.L); }
      let d4 = ed_p.d / 4u;
      let ub = (src * ed_p.B + e / ed_p.kseg) * d4;
      let wb = f * d4;
      var acc = vec4f(0.0);
      for (var j = lane; j < d4; j += 8u) { acc += ed_u4[ub + j] * ed_dec4[wb + j]; }
      part = acc.x + acc.y + acc.z + acc.w;
    }
  }
  g8_part[l.x] = part;
  workgroupBarrier();
  if (lane < 4u) { g8_part[l.x] += g8_part[l.x + 4u]; }
  workgroupBarrier();
  if (lane < 2u) { g8_part[l.x] += g8_part[l.x + 2u]; }
  workgroupBarrier();
  if (lane == 0u && inRange) { ed_dpre[ed_p.seg_base + e] = g8_part[l.x] + g8_part[l.x + 1u]; }
}

// entry_dpre4x4: entry_dpre4 for a segment with a fixed source (aux codes) and kseg % 4 == 0:
// one invocation does four consecutive entries of one row, loading U's row once per column for
// all four (five vec4 loads per four FMAs instead of eight). Each entry's sum runs in the same
// order as entry_dpre4, so the results are bitwise identical. Grid: one invocation per 4 entries.
@compute @workgroup_size(WG)
fn entry_dpre4x4(@builtin(global_invocation_id) g: vec3u) {
  let q = g.y * ed_p.row_stride + g.x;
  let e0 = q * 4u;
  if (e0 >= ed_p.B * ed_p.kseg) { return; }
  let f0 = ed_idx[e0];
  let f1 = ed_idx[e0 + 1u];
  let f2 = ed_idx[e0 + 2u];
  let f3 = ed_idx[e0 + 3u];
  let on0 = f0 != EMPTY && ed_val[e0] > 0.0;
  let on1 = f1 != EMPTY && ed_val[e0 + 1u] > 0.0;
  let on2 = f2 != EMPTY && ed_val[e0 + 2u] > 0.0;
  let on3 = f3 != EMPTY && ed_val[e0 + 3u] > 0.0;
  var dp = vec4f(0.0);
  if (on0 || on1 || on2 || on3) {
    let b = e0 / ed_p.kseg;
    let d4 = ed_p.d / 4u;
    // The host dispatches this only for fixed-source segments; the fallback keeps it well-defined.
    var src = ed_p.src;
    if (src == SRC_FROM_LAYER) { src = layer_of(f0, ed_p.L); }
    let ub = (src * ed_p.B + b) * d4;
    // Inactive entries read feature 0's row (always valid) and are zeroed below.
    let g0 = select(0u, f0, on0);
    let g1 = select(0u, f1, on1);
    let g2 = select(0u, f2, on2);
    let g3 = select(0u, f3, on3);
    let w0 = g0 * d4;
    let w1 = g1 * d4;
    let w2 = g2 * d4;
    let w3 = g3 * d4;
    let t0 = tex_row(g0);
    let t1 = tex_row(g1);
    let t2 = tex_row(g2);
    let t3 = tex_row(g3);
    var a0 = vec4f(0.0);
    var a1 = vec4f(0.0);
    var a2 = vec4f(0.0);
    var a3 = vec4f(0.0);
    let ut = tex_row(src * ed_p.B + b);
    for (var j = 0u; j < d4; j++) {
      let x = ed_u_at(ub, ut, j);
      a0 += x * ed_dec_at(w0, t0, j);
      a1 += x * ed_dec_at(w1, t1, j);
      a2 += x * ed_dec_at(w2, t2, j);
      a3 += x * ed_dec_at(w3, t3, j);
    }
    dp = vec4f(
      select(0.0, a0.x + a0.y + a0.z + a0.w, on0),
      select(0.0, a1.x + a1.y + a1.z + a1.w, on1),
      select(0.0, a2.x + a2.y + a2.z + a2.w, on2),
      select(0.0, a3.x + a3.y + a3.z + a3.w, on3),
    );
  }
  let o = ed_p.seg_base + e0;
  ed_dpre[o] = dp.x;
  ed_dpre[o + 1u] = dp.y;
  ed_dpre[o + 2u] = dp.z;
  ed_dpre[o + 3u] = dp.w;
}

@group(0) @binding(0) var<storage, read> hi_idx: array<u32>;
@group(0) @binding(1) var<storage, read> hi_val: array<f32>;
@group(0) @binding(2) var<storage, read_write> hi_counts: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> hi_p: Params;

@compute @workgroup_size(WG)
fn histogram(@builtin(global_invocation_id) g: vec3u) {
  let e = g.y * hi_p.row_stride + g.x;
  if (e >= hi_p.B * hi_p.kseg) { return; }
  let f = hi_idx[e];
  if (f == EMPTY || !(hi_val[e] > 0.0)) { return; }
  let blk = (e / hi_p.kseg) / hi_p.rows_per_block;
  atomicAdd(&hi_counts[blk * hi_p.n + f], 1u);
}

@group(0) @binding(0) var<storage, read_write> bp_counts: array<u32>;
@group(0) @binding(1) var<storage, read_write> bp_start: array<u32>;
@group(0) @binding(2) var<uniform> bp_p: Params;

const BP_UNROLL: u32 = 8u;

@compute @workgroup_size(WG)
fn block_prefix(@builtin(global_invocation_id) g: vec3u) {
  let f = g.y * bp_p.row_stride + g.x;
  if (f >= bp_p.n) { return; }
  // Counts read BP_UNROLL blocks at a time before their cursors are written: each read would
  // otherwise wait for the store before it (same buffer), a chain of n_blocks (~170) loads
  // (H200, n = 24 576: 0.30 → 0.09 ms).
  var run = 0u;
  var blk = 0u;
  for (; blk + BP_UNROLL <= bp_p.n_blocks; blk += BP_UNROLL) {
    var c: array<u32, BP_UNROLL>;
    for (var q = 0u; q < BP_UNROLL; q++) { c[q] = bp_counts[(blk + q) * bp_p.n + f]; }
    for (var q = 0u; q < BP_UNROLL; q++) {
      bp_counts[(blk + q) * bp_p.n + f] = run;
      run += c[q];
    }
  }
  for (; blk < bp_p.n_blocks; blk++) {
    let c = bp_counts[blk * bp_p.n + f];
    bp_counts[blk * bp_p.n + f] = run;
    run += c;
  }
  bp_start[f] = run;
}

var<workgroup> sc_part: array<u32, WG>;

@group(0) @binding(0) var<storage, read_write> sc_start: array<u32>;
@group(0) @binding(1) var<uniform> sc_p: Params;

@compute @workgroup_size(WG)
fn scan_features(@builtin(local_invocation_id) lid: vec3u) {
  let t = lid.x;
  let n = sc_p.n;
  let per = (n + WG - 1u) / WG;
  let lo = min(t * per, n);
  let hi = min(lo + per, n);
  var s = 0u;
  for (var f = lo; f < hi; f++) { s += sc_start[f]; }
  sc_part[t] = s;
  workgroupBarrier();
  // Hillis-Steele inclusive scan of the per-invocation sums.
  for (var off = 1u; off < WG; off *= 2u) {
    var add = 0u;
    if (t >= off) { add = sc_part[t - off]; }
    workgroupBarrier();
    sc_part[t] += add;
    workgroupBarrier();
  }
  var run = sc_part[t] - s;
  for (var f = lo; f < hi; f++) {
    let c = sc_start[f];
    sc_start[f] = run;
    run += c;
  }
  if (t == WG - 1u) { sc_start[n] = sc_part[t]; }
}

@group(0) @binding(0) var<storage, read> st_idx: array<u32>;
@group(0) @binding(1) var<storage, read> st_val: array<f32>;
@group(0) @binding(2) var<storage, read> st_dpre: array<f32>;
@group(0) @binding(3) var<storage, read_write> st_cursor: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read> st_start: array<u32>;
@group(0) @binding(5) var<storage, read_write> st_key: array<u32>;
@group(0) @binding(6) var<storage, read_write> st_sval: array<f32>;
@group(0) @binding(7) var<storage, read_write> st_sdpre: array<f32>;
@group(0) @binding(8) var<storage, read> st_ends: array<u32>;
@group(0) @binding(9) var<uniform> st_p: Params;

fn st_layer_of(f: u32) -> u32 {
  var l = 0u;
  loop {
    if (l + 1u >= st_p.L || f < st_ends[l]) { break; }
    l++;
  }
  return l;
}

// Stable scatter: one workgroup owns one row block's cursors, walks its rows in order and
// handles a row's slots in parallel. Slots of one row name distinct features, so no two
// invocations bump the same cursor within a row and every position is deterministic.
@compute @workgroup_size(WG)
fn scatter(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let blk = wg.y * st_p.row_stride + wg.x;
  if (blk >= st_p.n_blocks) { return; }
  let r0 = blk * st_p.rows_per_block;
  let r1 = min(r0 + st_p.rows_per_block, st_p.B);
  for (var b = r0; b < r1; b++) {
    for (var s = lid.x; s < st_p.kseg; s += WG) {
      let e = b * st_p.kseg + s;
      let f = st_idx[e];
      let v = st_val[e];
      if (f != EMPTY && v > 0.0) {
        let pos = st_start[f] + atomicAdd(&st_cursor[blk * st_p.n + f], 1u);
        var src = st_p.src;
        if (src == SRC_FROM_LAYER) { src = st_layer_of(f); }
        st_key[pos] = (src << 24u) | b;
        st_sval[pos] = v;
        st_sdpre[pos] = st_dpre[st_p.seg_base + e];
      }
    }
    storageBarrier();
  }
}

@group(0) @binding(0) var<storage, read> rf_start: array<u32>;
@group(0) @binding(1) var<storage, read> rf_key: array<u32>;
@group(0) @binding(2) var<storage, read> rf_sval: array<f32>;
@group(0) @binding(3) var<storage, read> rf_sdpre: array<f32>;
@group(0) @binding(4) var<storage, read> rf_u: array<f32>;
@group(0) @binding(5) var<storage, read> rf_xs: array<f32>;
@group(0) @binding(6) var<storage, read> rf_bdec: array<f32>;
@group(0) @binding(7) var<storage, read_write> rf_gdec: array<f32>;
@group(0) @binding(8) var<storage, read_write> rf_genc: array<f32>;
@group(0) @binding(9) var<storage, read_write> rf_sum: array<f32>;
@group(0) @binding(10) var<uniform> rf_p: Params;

// The feature of per-feature workgroup i (of ceil(n / SPREAD)·SPREAD). lavapipe hands each of its
// threads one contiguous share of a dispatch's workgroups, and the entries crowd into some features
// (a Tree SAE's first layer holds two thirds of them): with SPREAD > 1, workgroup i takes feature
// (i mod q)·SPREAD + i / q, q = ceil(n / SPREAD), so every contiguous share of the grid samples the
// whole range. A permutation of the padded range (features ≥ n return), so the sums are unchanged.
override SPREAD: u32 = 1u;
fn rf_feature(i: u32) -> u32 {
  let q = (rf_p.n + SPREAD - 1u) / SPREAD;
  return (i % q) * SPREAD + i / q;
}

// Per-feature segmented reduction: rows of features that have no entry are not touched
// (the optimizer leaves gradient buffers zeroed), only their dpre sum is cleared.
// Grid: x = column blocks of WG columns, y·z = features (feature = rf_feature(z·row_stride + y)). Invocation t
// of block c owns column j = c·WG + t and walks the feature's entries in order.
// The encoder part uses Σ dpre·(xs − bDec) = Σ dpre·xs − (Σ dpre)·bDec.
@compute @workgroup_size(WG)
fn reduce_features(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let f = rf_feature(wg.z * rf_p.row_stride + wg.y);
  if (f >= rf_p.n) { return; }
  let lo = rf_start[f];
  let hi = rf_start[f + 1u];
  let j = wg.x * WG + lid.x;
  if (lo == hi) {
    if (j == 0u) { rf_sum[f] = 0.0; }
    return;
  }
  let d = rf_p.d;
  if (j >= d) { return; }
  let bd = rf_p.B * d;
  var gd = 0.0;
  var ge = 0.0;
  var s = 0.0;
  for (var e = lo; e < hi; e++) {
    let key = rf_key[e];
    let b = key & 0xFFFFFFu;
    let dp = rf_sdpre[e];
    s += dp;
    gd += rf_sval[e] * rf_u[(key >> 24u) * bd + b * d + j];
    ge += dp * rf_xs[b * d + j];
  }
  rf_gdec[f * d + j] = gd;
  rf_genc[f * d + j] = ge - s * rf_bdec[j];
  if (j == 0u) { rf_sum[f] = s; }
}

// reduce_features4: reduce_features on vec4 views (d a multiple of 4). Grid: x·y = features
// (feature = rf_feature(y·row_stride + x)), z = column blocks, so every feature is done for one block of
// 4·WG columns before the next block: U's and xs's column block stays in cache while the
// features' entries jump between rows. Invocation t of block c owns columns 4·(c·WG + t) .. +3.
@group(0) @binding(4) var<storage, read> rf_u4: array<vec4f>;
@group(0) @binding(5) var<storage, read> rf_xs4: array<vec4f>;
@group(0) @binding(6) var<storage, read> rf_bdec4: array<vec4f>;
@group(0) @binding(7) var<storage, read_write> rf_gdec4: array<vec4f>;
@group(0) @binding(8) var<storage, read_write> rf_genc4: array<vec4f>;

@compute @workgroup_size(WG)
fn reduce_features4(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let f = rf_feature(wg.y * rf_p.row_stride + wg.x);
  if (f >= rf_p.n) { return; }
  let lo = rf_start[f];
  let hi = rf_start[f + 1u];
  let j = wg.z * WG + lid.x;
  if (lo == hi) {
    if (j == 0u) { rf_sum[f] = 0.0; }
    return;
  }
  let d4 = rf_p.d / 4u;
  if (j >= d4) { return; }
  let bd4 = rf_p.B * d4;
  var gd = vec4f(0.0);
  var ge = vec4f(0.0);
  var s = 0.0;
  for (var e = lo; e < hi; e++) {
    let key = rf_key[e];
    let b = key & 0xFFFFFFu;
    let dp = rf_sdpre[e];
    s += dp;
    gd += rf_sval[e] * rf_u4[(key >> 24u) * bd4 + b * d4 + j];
    ge += dp * rf_xs4[b * d4 + j];
  }
  rf_gdec4[f * d4 + j] = gd;
  rf_genc4[f * d4 + j] = ge - s * rf_bdec4[j];
  if (j == 0u) { rf_sum[f] = s; }
}

// reduce_features16: reduce_features4 with four vec4s (16 columns) per invocation, so the
// entry's key, value and dpre loads (uniform over the workgroup, but per-lane loads on
// software adapters) are paid once per 16 columns. d a multiple of 16. Grid as
// reduce_features4; invocation t of block c owns vec4 columns 4·(c·WG + t) .. +3.
// With RF_TEX, U's and xs's rows come from their matrix textures (bindings 11: U as S·B rows,
// 12: xs; placeholders bound otherwise), gathered across lanes as in entry_dpre4 with DEC_TEX.
override RF_TEX: bool = false;
@group(0) @binding(11) var rf_u_t: texture_2d_array<f32>;
@group(0) @binding(12) var rf_xs_t: texture_2d_array<f32>;

// vec4 j of U's row at storage offset i (in vec4s) and texture row t.
fn rf_u_at(i: u32, t: vec2i, j: u32) -> vec4f {
  if (RF_TEX) { return textureLoad(rf_u_t, vec2i(i32(j), t.x), t.y, 0); }
  return rf_u4[i];
}

// vec4 j of xs's row at storage offset i (in vec4s) and texture row t.
fn rf_xs_at(i: u32, t: vec2i, j: u32) -> vec4f {
  if (RF_TEX) { return textureLoad(rf_xs_t, vec2i(i32(j), t.x), t.y, 0); }
  return rf_xs4[i];
}

@compute @workgroup_size(WG)
fn reduce_features16(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let f = rf_feature(wg.y * rf_p.row_stride + wg.x);
  if (f >= rf_p.n) { return; }
  let lo = rf_start[f];
  let hi = rf_start[f + 1u];
  let j = (wg.z * WG + lid.x) * 4u;
  if (lo == hi) {
    if (j == 0u) { rf_sum[f] = 0.0; }
    return;
  }
  let d4 = rf_p.d / 4u;
  if (j >= d4) { return; }
  let bd4 = rf_p.B * d4;
  var gd0 = vec4f(0.0);
  var gd1 = vec4f(0.0);
  var gd2 = vec4f(0.0);
  var gd3 = vec4f(0.0);
  var ge0 = vec4f(0.0);
  var ge1 = vec4f(0.0);
  var ge2 = vec4f(0.0);
  var ge3 = vec4f(0.0);
  var s = 0.0;
  for (var e = lo; e < hi; e++) {
    let key = rf_key[e];
    let b = key & 0xFFFFFFu;
    let dp = rf_sdpre[e];
    let v = rf_sval[e];
    s += dp;
    let ub = (key >> 24u) * bd4 + b * d4 + j;
    let xb = b * d4 + j;
    let ut = tex_row((key >> 24u) * rf_p.B + b);
    let xt = tex_row(b);
    gd0 += v * rf_u_at(ub, ut, j);
    gd1 += v * rf_u_at(ub + 1u, ut, j + 1u);
    gd2 += v * rf_u_at(ub + 2u, ut, j + 2u);
    gd3 += v * rf_u_at(ub + 3u, ut, j + 3u);
    ge0 += dp * rf_xs_at(xb, xt, j);
    ge1 += dp * rf_xs_at(xb + 1u, xt, j + 1u);
    ge2 += dp * rf_xs_at(xb + 2u, xt, j + 2u);
    ge3 += dp * rf_xs_at(xb + 3u, xt, j + 3u);
  }
  let o = f * d4 + j;
  rf_gdec4[o] = gd0;
  rf_gdec4[o + 1u] = gd1;
  rf_gdec4[o + 2u] = gd2;
  rf_gdec4[o + 3u] = gd3;
  rf_genc4[o] = ge0 - s * rf_bdec4[j];
  rf_genc4[o + 1u] = ge1 - s * rf_bdec4[j + 1u];
  rf_genc4[o + 2u] = ge2 - s * rf_bdec4[j + 2u];
  rf_genc4[o + 3u] = ge3 - s * rf_bdec4[j + 3u];
  if (j == 0u) { rf_sum[f] = s; }
}

@group(0) @binding(0) var<storage, read> bq_sum: array<f32>;
@group(0) @binding(1) var<storage, read> bq_enc: array<f32>;
@group(0) @binding(2) var<storage, read_write> bq_partial: array<f32>;
@group(0) @binding(3) var<uniform> bq_p: Params;
// With BQ_TEX, encW's rows come from its matrix texture (binding 4; a placeholder is bound
// otherwise) and one invocation owns the four columns of one texel: g.x = j / 4 (d % 4 == 0).
// Each column's sum runs over the features in the same order either way.
override BQ_TEX: bool = false;
@group(0) @binding(4) var bq_enc_t: texture_2d_array<f32>;

@compute @workgroup_size(WG)
fn bdec_partial(@builtin(global_invocation_id) g: vec3u) {
  let c = g.y;
  let f0 = c * bq_p.chunk;
  let f1 = min(f0 + bq_p.chunk, bq_p.n);
  if (BQ_TEX) {
    let j4 = g.x;
    if (j4 * 4u >= bq_p.d || c >= bq_p.n_chunks) { return; }
    var acc4 = vec4f(0.0);
    for (var f = f0; f < f1; f++) {
      let s = bq_sum[f];
      let t = tex_row(f);
      if (s != 0.0) { acc4 += s * textureLoad(bq_enc_t, vec2i(i32(j4), t.x), t.y, 0); }
    }
    let o = c * bq_p.d + j4 * 4u;
    bq_partial[o] = acc4.x;
    bq_partial[o + 1u] = acc4.y;
    bq_partial[o + 2u] = acc4.z;
    bq_partial[o + 3u] = acc4.w;
    return;
  }
  let j = g.x;
  if (j >= bq_p.d || c >= bq_p.n_chunks) { return; }
  var acc = 0.0;
  for (var f = f0; f < f1; f++) {
    let s = bq_sum[f];
    if (s != 0.0) { acc += s * bq_enc[f * bq_p.d + j]; }
  }
  bq_partial[c * bq_p.d + j] = acc;
}

override BDEC_ROWS: u32 = 64u;

@group(0) @binding(0) var<storage, read> br_u: array<f32>;
@group(0) @binding(1) var<storage, read_write> br_out: array<f32>;
@group(0) @binding(2) var<uniform> br_p: Params;

@compute @workgroup_size(WG)
fn bdec_rows(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  let b0 = g.y * BDEC_ROWS;
  if (j >= br_p.d || b0 >= br_p.B) { return; }
  let b1 = min(b0 + BDEC_ROWS, br_p.B);
  var acc = 0.0;
  for (var b = b0; b < b1; b++) { acc += br_u[b * br_p.d + j]; }
  br_out[g.y * br_p.d + j] = acc;
}

@group(0) @binding(0) var<storage, read> bf_rows: array<f32>;
@group(0) @binding(1) var<storage, read> bf_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> bf_gradb: array<f32>;
@group(0) @binding(3) var<uniform> bf_p: Params;

@compute @workgroup_size(WG)
fn bdec_final(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  if (j >= bf_p.d) { return; }
  var acc = 0.0;
  for (var q = 0u; q * BDEC_ROWS < bf_p.B; q++) { acc += bf_rows[q * bf_p.d + j]; }
  var sub = 0.0;
  for (var c = 0u; c < bf_p.n_chunks; c++) { sub += bf_partial[c * bf_p.d + j]; }
  bf_gradb[j] = acc - sub;
}
