// sparse_decode: level reconstructions x̂s_{≤l} from the sparse codes (Arbor SAE contract,
// "Reconstruction"), and the AuxK reconstruction ê (no bias). Never forms a dense [B, n] code matrix.
//
//   out[l, b, j] = bias·bDec[j] + Σ_{slots s of row b with level(s) ≤ l} val[b, s] · decW[idx[b, s], j]
//
// Bindings: 0 idx    array<u32>  [B, K]     feature per slot (0xFFFFFFFF = unused, skipped)
//           1 val    array<f32>  [B, K]     value per slot (0 contributes nothing and is skipped)
//           2 decW   array<f32>  [n, d]     decoder rows
//           3 bDec   array<f32>  [d]
//           4 bounds array<u32>  [L]        level ends, ascending (see mode)
//           5 out    array<f32>  [L, B, d]  one reconstruction per level
//           6 u      Params
// level(s) = the first l with key < bounds[l], key = slot position s (mode 0: topk, batchtopk, tree —
// slots are layer-major, bounds = cumulative k) or key = idx (mode 1: matryoshka, bounds = prefix
// ends). Slots whose key is beyond the last bound are ignored.
// Entries (lib/sae/ops/sparse_decode.ts picks one):
//  * decode_levels (any d): one invocation computes column j of row b for every level, walking the
//    row's K slots in order and adding each term into the running sum of every level ≥ its own (a
//    fixed, unrolled loop over MAX_LEVELS levels, so the sums stay in registers; indexed private
//    arrays are spilled per lane on llvmpipe). Grid: (ceil(d / WG), B).
//  * decode_levels4 (d % 4 == 0): the same on vec4 columns 4j..4j+3, the row's slots and levels
//    staged in workgroup memory SLOT_TILE at a time. Grid: (ceil(d / (4·WG)), B).
//  * decode_slots16 / decode_slots16_tex / decode_slots16_tex4: see below (mode 0, the fast paths).
//  * decode_levels16_tex: any levels from decW's texture (matryoshka on software adapters); below.
//  * decode_blocks16_tex: one block (of dead features) of a single-level decode whose rows were
//    regrouped by kernels/slot_blocks.wgsl (binding 4 = its starts [B, nBlocks + 1], in place of
//    bounds); see below.
// Fixed summation order everywhere: deterministic.

override WG: u32 = 64;

// Most levels a reconstruction may have (tree layers / matryoshka prefixes).
const MAX_LEVELS: u32 = 8u;
const NO_SLOT: u32 = 0xffffffffu;

struct Params { B: u32, d: u32, K: u32, L: u32, mode: u32, withBias: u32, block: u32, nBlocks: u32 }

@group(0) @binding(0) var<storage, read> idx: array<u32>;
@group(0) @binding(1) var<storage, read> val: array<f32>;
// decode_slots16_tex4 reads bindings 0 and 1 four slots at a time.
@group(0) @binding(0) var<storage, read> idx4: array<vec4u>;
@group(0) @binding(1) var<storage, read> val4: array<vec4f>;
@group(0) @binding(2) var<storage, read> decW: array<f32>;
@group(0) @binding(3) var<storage, read> bDec: array<f32>;
@group(0) @binding(4) var<storage, read> bounds: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> u: Params;
@group(0) @binding(2) var<storage, read> decW4: array<vec4f>;
@group(0) @binding(3) var<storage, read> bDec4: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> out4: array<vec4f>;
// decode_slots16_tex: decW mirrored into an rgba32float array texture (lib/sae/ops/matrix_texture.ts).
@group(0) @binding(2) var decT: texture_2d_array<f32>;
// decode_blocks16_tex: where each block starts in each regrouped row (it reads no bounds).
@group(0) @binding(4) var<storage, read> starts: array<u32>;
// Matrix rows per texture layer; must equal TEX_ROWS in lib/sae/ops/matrix_texture.ts (tested).
const TEX_ROWS: u32 = 4096u;

// Level of slot s holding feature f: the first l with key < bounds[l] (L when beyond the last).
fn level_of(s: u32, f: u32) -> u32 {
  let key = select(s, f, u.mode == 1u);
  var lev = 0u;
  loop {
    if (lev >= u.L || key < bounds[lev]) { break; }
    lev++;
  }
  return lev;
}

@compute @workgroup_size(WG)
fn decode_levels(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  let b = g.y;
  if (j >= u.d || b >= u.B) { return; }
  var acc: array<f32, MAX_LEVELS>;
  for (var s = 0u; s < u.K; s++) {
    let f = idx[b * u.K + s];
    let v = val[b * u.K + s];
    if (f == NO_SLOT || v == 0.0) { continue; }
    let lev = level_of(s, f);
    let term = v * decW[f * u.d + j];
    for (var l = 0u; l < MAX_LEVELS; l++) { acc[l] += select(0.0, term, l >= lev); }
  }
  let bias = select(0.0, bDec[j], u.withBias != 0u);
  for (var l = 0u; l < MAX_LEVELS; l++) {
    if (l < u.L) { out[(l * u.B + b) * u.d + j] = bias + acc[l]; }
  }
}

// The row's slots, staged once per workgroup (all invocations of a workgroup share the row b):
// feature, value, and level (MAX_LEVELS = skip).
const SLOT_TILE: u32 = 256u;
var<workgroup> sIdx: array<u32, SLOT_TILE>;
var<workgroup> sVal: array<f32, SLOT_TILE>;
var<workgroup> sLev: array<u32, SLOT_TILE>;

@compute @workgroup_size(WG)
fn decode_levels4(@builtin(global_invocation_id) g: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let j = g.x;
  let b = g.y;
  if (b >= u.B) { return; }
  let d4 = u.d / 4u;
  let jj = min(j, d4 - 1u);
  var acc: array<vec4f, MAX_LEVELS>;
  for (var s0 = 0u; s0 < u.K; s0 += SLOT_TILE) {
    let cnt = min(SLOT_TILE, u.K - s0);
    for (var t = l.x; t < cnt; t += WG) {
      let f = idx[b * u.K + s0 + t];
      let v = val[b * u.K + s0 + t];
      let skip = f == NO_SLOT || v == 0.0;
      sIdx[t] = select(f, 0u, skip);
      sVal[t] = v;
      sLev[t] = select(level_of(s0 + t, f), MAX_LEVELS, skip);
    }
    workgroupBarrier();
    for (var t = 0u; t < cnt; t++) {
      let lev = sLev[t];
      let term = sVal[t] * decW4[sIdx[t] * d4 + jj];
      for (var q = 0u; q < MAX_LEVELS; q++) { acc[q] += select(vec4f(0.0), term, q >= lev); }
    }
    workgroupBarrier();
  }
  if (j >= d4) { return; }
  let bias = select(vec4f(0.0), bDec4[j], u.withBias != 0u);
  for (var q = 0u; q < MAX_LEVELS; q++) {
    if (q < u.L) { out4[(q * u.B + b) * d4 + j] = bias + acc[q]; }
  }
}

// decode_slots16 (mode 0 only, d % 4 == 0; decode_slots16_tex likewise, d % 64 == 0): levels are consecutive slot ranges [bounds[l−1],
// bounds[l]), so one running sum per column serves every level — written out after each range.
// One invocation owns 4 vec4 columns (nl = ceil(d/16) invocations per row), spreading each slot's
// loads over 16 columns. Grid: (ceil(nl / WG), B).
// The 16 columns an invocation of the slots16 entries owns, clamped to the row (the stores skip the
// clamped ones), and their running sums. With CONTIG (software adapters) vec4 columns 4j .. 4j + 3:
// one gather of a SIMD group's lanes then touches its 8 lanes' cache lines of the decoder row at
// once (each slot reads a random row of decW, missing the caches): 360 → 230 ms for the step's
// 4 096 × 32 slots on llvmpipe. Without (GPUs), j, j + nl, j + 2nl, j + 3nl: neighbouring lanes
// read neighbouring vec4s, which a GPU coalesces.
override CONTIG: bool = true;
struct Cols16 { j: vec4u, a0: vec4f, a1: vec4f, a2: vec4f, a3: vec4f }

fn cols16_cols(j: u32, nl: u32, d4: u32) -> vec4u {
  let c = select(vec4u(j, j + nl, j + 2u * nl, j + 3u * nl), vec4u(4u * j) + vec4u(0u, 1u, 2u, 3u), CONTIG);
  return min(c, vec4u(d4 - 1u));
}

fn cols16_start(j: u32, nl: u32, d4: u32) -> Cols16 {
  let jj = cols16_cols(j, nl, d4);
  let useBias = u.withBias != 0u;
  return Cols16(jj, select(vec4f(0.0), bDec4[jj.x], useBias),
    select(vec4f(0.0), bDec4[jj.y], useBias), select(vec4f(0.0), bDec4[jj.z], useBias),
    select(vec4f(0.0), bDec4[jj.w], useBias));
}

// Add v · decW[f] (storage) to the 16 columns.
fn cols16_add(c: ptr<function, Cols16>, f: u32, v: f32, d4: u32) {
  let row = f * d4;
  (*c).a0 += v * decW4[row + (*c).j.x];
  (*c).a1 += v * decW4[row + (*c).j.y];
  (*c).a2 += v * decW4[row + (*c).j.z];
  (*c).a3 += v * decW4[row + (*c).j.w];
}

// Add v · decW[f] (texture) to the 16 columns.
fn cols16_add_tex(c: ptr<function, Cols16>, f: u32, v: f32) {
  let y = i32(f % TEX_ROWS);
  let z = i32(f / TEX_ROWS);
  (*c).a0 += v * textureLoad(decT, vec2i(i32((*c).j.x), y), z, 0);
  (*c).a1 += v * textureLoad(decT, vec2i(i32((*c).j.y), y), z, 0);
  (*c).a2 += v * textureLoad(decT, vec2i(i32((*c).j.z), y), z, 0);
  (*c).a3 += v * textureLoad(decT, vec2i(i32((*c).j.w), y), z, 0);
}

// The 16 columns' running sums as stored in level 0 of row b (by cols16_store).
fn cols16_load(j: u32, nl: u32, d4: u32, b: u32) -> Cols16 {
  let jj = cols16_cols(j, nl, d4);
  let o = b * d4;
  return Cols16(jj, out4[o + jj.x], out4[o + jj.y], out4[o + jj.z], out4[o + jj.w]);
}

// Write the running sums as level l of row b.
fn cols16_store(c: Cols16, l: u32, b: u32, j: u32, nl: u32, d4: u32) {
  let o = (l * u.B + b) * d4;
  let col = select(vec4u(j, j + nl, j + 2u * nl, j + 3u * nl), vec4u(4u * j) + vec4u(0u, 1u, 2u, 3u), CONTIG);
  if (col.x < d4) { out4[o + col.x] = c.a0; }
  if (col.y < d4) { out4[o + col.y] = c.a1; }
  if (col.z < d4) { out4[o + col.z] = c.a2; }
  if (col.w < d4) { out4[o + col.w] = c.a3; }
}

@compute @workgroup_size(WG)
fn decode_slots16(@builtin(global_invocation_id) g: vec3u) {
  let b = g.y;
  let d4 = u.d / 4u;
  let nl = (d4 + 3u) / 4u;
  let j = g.x;
  if (b >= u.B || j >= nl) { return; }
  var c = cols16_start(j, nl, d4);
  var s = 0u;
  for (var l = 0u; l < u.L; l++) {
    let end = min(bounds[l], u.K);
    for (; s < end; s++) {
      let f = idx[b * u.K + s];
      let v = val[b * u.K + s];
      if (f == NO_SLOT || v == 0.0) { continue; }
      cols16_add(&c, f, v, d4);
    }
    cols16_store(c, l, b, j, nl, d4);
  }
}

// decode_slots16_tex: decode_slots16 with decW read through texel fetches (binding 2 is the
// texture); llvmpipe turns those into SIMD gathers, ~1.15× decode_slots16 there.
@compute @workgroup_size(WG)
fn decode_slots16_tex(@builtin(global_invocation_id) g: vec3u) {
  let b = g.y;
  let d4 = u.d / 4u;
  let nl = (d4 + 3u) / 4u;
  let j = g.x;
  if (b >= u.B || j >= nl) { return; }
  var c = cols16_start(j, nl, d4);
  var s = 0u;
  for (var l = 0u; l < u.L; l++) {
    let end = min(bounds[l], u.K);
    for (; s < end; s++) {
      let f = idx[b * u.K + s];
      let v = val[b * u.K + s];
      if (f == NO_SLOT || v == 0.0) { continue; }
      cols16_add_tex(&c, f, v);
    }
    cols16_store(c, l, b, j, nl, d4);
  }
}

// decode_slots16_tex4: decode_slots16_tex reading each row's slots four at a time (one vec4 load of
// idx and one of val per four slots instead of four of each: llvmpipe loads storage per lane). Needs
// K % 4 == 0 and every level end min(bounds[l], K) a multiple of 4 (AuxK's single level, TopK); the
// slots are added in the same order, so the result is bitwise decode_slots16_tex's.
@compute @workgroup_size(WG)
fn decode_slots16_tex4(@builtin(global_invocation_id) g: vec3u) {
  let b = g.y;
  let d4 = u.d / 4u;
  let nl = (d4 + 3u) / 4u;
  let j = g.x;
  if (b >= u.B || j >= nl) { return; }
  var c = cols16_start(j, nl, d4);
  let row4 = b * (u.K / 4u);
  var s4 = 0u;
  for (var l = 0u; l < u.L; l++) {
    let end4 = min(bounds[l], u.K) / 4u;
    for (; s4 < end4; s4++) {
      let fs = idx4[row4 + s4];
      let vs = val4[row4 + s4];
      for (var q = 0u; q < 4u; q++) {
        if (fs[q] == NO_SLOT || vs[q] == 0.0) { continue; }
        cols16_add_tex(&c, fs[q], vs[q]);
      }
    }
    cols16_store(c, l, b, j, nl, d4);
  }
}

// decode_levels16_tex: any levels (mode 1: matryoshka's feature prefixes, too) with decW read
// through its texture (d % 64 == 0). An invocation owns the 16 contiguous columns of cols16_cols
// and keeps one running sum per level (LEVELS of them, the host's L: an override, so the unused
// ones compile away). Each slot's decoder row is gathered once, 16 columns per lane, and added
// into the sum of every level at or above the slot's own (a weight of v or 0 per level: no
// indexed private array, which llvmpipe spills per lane: 479–503 → 369–387 ms for 4 096 rows of
// matryoshka-4layer-l0-32, bench/decode_probe.ts). Level l's sum is the bias plus its slots in slot
// order, as decode_levels4 adds them. Grid: (ceil(nl / WG), B).
override LEVELS: u32 = MAX_LEVELS;

// Add w · (t0, t1, t2, t3) to the 16 columns' sums.
fn cols16_add4(c: ptr<function, Cols16>, w: f32, t0: vec4f, t1: vec4f, t2: vec4f, t3: vec4f) {
  (*c).a0 += w * t0;
  (*c).a1 += w * t1;
  (*c).a2 += w * t2;
  (*c).a3 += w * t3;
}

@compute @workgroup_size(WG)
fn decode_levels16_tex(@builtin(global_invocation_id) g: vec3u) {
  let b = g.y;
  let d4 = u.d / 4u;
  let nl = (d4 + 3u) / 4u;
  let j = g.x;
  if (b >= u.B || j >= nl) { return; }
  let c = cols16_start(j, nl, d4);
  let jj = c.j;
  var c0 = c;
  var c1 = c;
  var c2 = c;
  var c3 = c;
  var c4 = c;
  var c5 = c;
  var c6 = c;
  var c7 = c;
  for (var s = 0u; s < u.K; s++) {
    let f = idx[b * u.K + s];
    let v = val[b * u.K + s];
    if (f == NO_SLOT || v == 0.0) { continue; }
    let lev = level_of(s, f);
    if (lev >= u.L) { continue; }
    let y = i32(f % TEX_ROWS);
    let z = i32(f / TEX_ROWS);
    let t0 = textureLoad(decT, vec2i(i32(jj.x), y), z, 0);
    let t1 = textureLoad(decT, vec2i(i32(jj.y), y), z, 0);
    let t2 = textureLoad(decT, vec2i(i32(jj.z), y), z, 0);
    let t3 = textureLoad(decT, vec2i(i32(jj.w), y), z, 0);
    cols16_add4(&c0, select(0.0, v, lev == 0u), t0, t1, t2, t3);
    if (LEVELS > 1u) { cols16_add4(&c1, select(0.0, v, lev <= 1u), t0, t1, t2, t3); }
    if (LEVELS > 2u) { cols16_add4(&c2, select(0.0, v, lev <= 2u), t0, t1, t2, t3); }
    if (LEVELS > 3u) { cols16_add4(&c3, select(0.0, v, lev <= 3u), t0, t1, t2, t3); }
    if (LEVELS > 4u) { cols16_add4(&c4, select(0.0, v, lev <= 4u), t0, t1, t2, t3); }
    if (LEVELS > 5u) { cols16_add4(&c5, select(0.0, v, lev <= 5u), t0, t1, t2, t3); }
    if (LEVELS > 6u) { cols16_add4(&c6, select(0.0, v, lev <= 6u), t0, t1, t2, t3); }
    if (LEVELS > 7u) { cols16_add4(&c7, select(0.0, v, lev <= 7u), t0, t1, t2, t3); }
  }
  cols16_store(c0, 0u, b, j, nl, d4);
  if (LEVELS > 1u && u.L > 1u) { cols16_store(c1, 1u, b, j, nl, d4); }
  if (LEVELS > 2u && u.L > 2u) { cols16_store(c2, 2u, b, j, nl, d4); }
  if (LEVELS > 3u && u.L > 3u) { cols16_store(c3, 3u, b, j, nl, d4); }
  if (LEVELS > 4u && u.L > 4u) { cols16_store(c4, 4u, b, j, nl, d4); }
  if (LEVELS > 5u && u.L > 5u) { cols16_store(c5, 5u, b, j, nl, d4); }
  if (LEVELS > 6u && u.L > 6u) { cols16_store(c6, 6u, b, j, nl, d4); }
  if (LEVELS > 7u && u.L > 7u) { cols16_store(c7, 7u, b, j, nl, d4); }
}

// decode_blocks16_tex: block u.block of a single-level texture decode over rows regrouped by block
// of dead features (kernels/slot_blocks.wgsl). Dispatched once per block in block order: block 0
// starts the running sums (bias or 0), each later block resumes them from out and adds its slots,
// so after the last block out holds exactly what decode_slots16_tex gives for the regrouped rows
// (same sums in the same order). Run this way, all rows read decoder rows of one block at a time:
// llvmpipe's gathers then hit the CPU caches instead of missing across all of decW (AuxK over 3 072
// dead features: ~3× faster). Grid: (ceil(nl / WG), B).
@compute @workgroup_size(WG)
fn decode_blocks16_tex(@builtin(global_invocation_id) g: vec3u) {
  let b = g.y;
  let d4 = u.d / 4u;
  let nl = (d4 + 3u) / 4u;
  let j = g.x;
  if (b >= u.B || j >= nl) { return; }
  let sb = b * (u.nBlocks + 1u) + u.block;
  let first = starts[sb];
  let end = starts[sb + 1u];
  // A later block with no slots in this row leaves its sums as they are.
  if (u.block > 0u && first == end) { return; }
  var c: Cols16;
  if (u.block == 0u) { c = cols16_start(j, nl, d4); } else { c = cols16_load(j, nl, d4, b); }
  let row = b * u.K;
  for (var s = first; s < end; s++) {
    let f = idx[row + s];
    let v = val[row + s];
    if (v == 0.0) { continue; }
    cols16_add_tex(&c, f, v);
  }
  cols16_store(c, 0u, b, j, nl, d4);
}
