// loss: deterministic reductions for the SAE losses (Arbor SAE contract, "Reconstruction and loss").
// Two passes, fixed summation order, no float atomics: the same inputs give bitwise the same sums.
//
// Entry column_block_sums — per column j and block b of ROWS consecutive rows of a [B, d] difference
// e = a − bScale·b + cScale·c:
//   blocks[2·(b·d + j)]     = s = Σ_{rows of b} e[r, j]
//   blocks[2·(b·d + j) + 1] = q = Σ (e[r, j] − s / rows_b)²  when centered, else Σ e[r, j]².
//   Bindings: 0 a    array<f32>  [.., B, d]  read at element offset aOff
//             1 b    array<f32>  [.., B, d]  read at bOff (ignored when bScale = 0: bind any buffer)
//             2 c    array<f32>  [.., B, d]  read at cOff (ignored when cScale = 0)
//             3 blocks array<f32> [NB, d, 2] scratch, NB = ceil(B / ROWS)
//             4 u    ColParams
//   One invocation per (column, block) walks the block's rows in order (twice when centered).
//   Grid: (ceil(d / WG), NB).
// Entry column_block_sums4 — the same four columns per invocation, on vec4 views (d and the offsets
//   multiples of 4; llvmpipe makes one load per lane for a vec4 as for an f32), one pass when not
//   centered; per column the same operations in the same order, so the same sums.
//   Bindings 5-7: with LOSS_TEX, a, b, c as matrix textures (see LOSS_TEX below).
//   Grid: (ceil(d / (4·WG)), NB).
//   Uses: totalVar (a = xs, bScale = 0, centered); level error (a = x̂s_l, b = xs);
//   AuxK numerator (a = ê, b = xs, c = x̂s_l: ê − r); AuxK denominator (a = xs, b = x̂s_l,
//   centered: r = xs − x̂s_l about its batch mean).
//
// Entry column_merge — merged[outRow·d + j] = the column's sum over all B rows, merging the NB blocks in
//   order: q summed, or when centered Chan et al.'s pairwise update of (count, mean, M2), so the
//   result is Σ_b (e − mean_b e)² without a serial pass over all B rows.
//   Bindings: 0 blocksIn array<f32> [NB, d, 2]; 1 merged array<f32> [T, d]; 2 um ColParams.
//   Grid: ceil(d / WG).
//
// Why blocks: one invocation per column walking B = 4096 rows serially is a 4096-long dependent
// chain, ~1.7 ms per term on an H200 with only d invocations busy; blocks give d·NB of them.
//
// Entry reduce_terms — terms[t] = Σ_j partials[t·d + j] for t < T.
//   Bindings: 0 partials array<f32> [T, d]; 1 terms array<f32> [T]; 2 u RedParams.
//   One workgroup per term: each invocation sums a strided set of columns in order, then a
//   fixed-shape tree in workgroup memory. Grid: T.

override WG: u32 = 64;
override ROWS: u32 = 64;

struct ColParams {
  B: u32, d: u32, aOff: u32, bOff: u32,
  cOff: u32, outRow: u32, centered: u32, pad0: u32,
  bScale: f32, cScale: f32, pad1: f32, pad2: f32,
}

struct RedParams { d: u32, T: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> bm: array<f32>;
@group(0) @binding(2) var<storage, read> cm: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> u: ColParams;
@group(0) @binding(0) var<storage, read> blocksIn: array<f32>;
@group(0) @binding(1) var<storage, read_write> merged: array<f32>;
@group(0) @binding(2) var<uniform> um: ColParams;

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> terms: array<f32>;
@group(0) @binding(2) var<uniform> ur: RedParams;

var<workgroup> scratch: array<f32, WG>;

// e[row, j]; b and c are read only when their scale is not 0 (a uniform branch).
fn diff(row: u32, j: u32) -> f32 {
  let e = row * u.d + j;
  var x = a[u.aOff + e];
  if (u.bScale != 0.0) { x = x - u.bScale * bm[u.bOff + e]; }
  if (u.cScale != 0.0) { x = x + u.cScale * cm[u.cOff + e]; }
  return x;
}

@compute @workgroup_size(WG)
fn column_block_sums(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  let r0 = g.y * ROWS;
  if (j >= u.d || r0 >= u.B) { return; }
  let r1 = min(r0 + ROWS, u.B);
  var s = 0.0;
  for (var r = r0; r < r1; r++) { s += diff(r, j); }
  var mean = 0.0;
  if (u.centered != 0u) { mean = s / f32(r1 - r0); }
  var q = 0.0;
  for (var r = r0; r < r1; r++) {
    let e = diff(r, j) - mean;
    q = fma(e, e, q);
  }
  let o = 2u * (g.y * u.d + j);
  out[o] = s;
  out[o + 1u] = q;
}

@group(0) @binding(0) var<storage, read> a4: array<vec4f>;
@group(0) @binding(1) var<storage, read> bm4: array<vec4f>;
@group(0) @binding(2) var<storage, read> cm4: array<vec4f>;

// With LOSS_TEX (software adapters), column_block_sums4 reads a, b and c through their matrix
// textures (bindings 5-7; row q of a [rows, d] matrix at texel (j4, q % TEX_ROWS) of layer
// q / TEX_ROWS, the offsets then multiples of d): llvmpipe gathers a texel fetch across its SIMD
// lanes, where it loops a storage load over them. Placeholders are bound otherwise.
override LOSS_TEX: bool = false;
const TEX_ROWS: u32 = 4096u;
@group(0) @binding(5) var aT: texture_2d_array<f32>;
@group(0) @binding(6) var bT: texture_2d_array<f32>;
@group(0) @binding(7) var cT: texture_2d_array<f32>;

fn texel_a(q: u32, j4: u32) -> vec4f {
  return textureLoad(aT, vec2i(i32(j4), i32(q % TEX_ROWS)), i32(q / TEX_ROWS), 0);
}
fn texel_b(q: u32, j4: u32) -> vec4f {
  return textureLoad(bT, vec2i(i32(j4), i32(q % TEX_ROWS)), i32(q / TEX_ROWS), 0);
}
fn texel_c(q: u32, j4: u32) -> vec4f {
  return textureLoad(cT, vec2i(i32(j4), i32(q % TEX_ROWS)), i32(q / TEX_ROWS), 0);
}

// diff for columns 4·j4 .. 4·j4 + 3 (d, aOff, bOff, cOff multiples of 4).
fn diff4(row: u32, j4: u32) -> vec4f {
  if (LOSS_TEX) {
    var x = texel_a(u.aOff / u.d + row, j4);
    if (u.bScale != 0.0) { x = x - u.bScale * texel_b(u.bOff / u.d + row, j4); }
    if (u.cScale != 0.0) { x = x + u.cScale * texel_c(u.cOff / u.d + row, j4); }
    return x;
  }
  let e = (row * u.d) / 4u + j4;
  var x = a4[u.aOff / 4u + e];
  if (u.bScale != 0.0) { x = x - u.bScale * bm4[u.bOff / 4u + e]; }
  if (u.cScale != 0.0) { x = x + u.cScale * cm4[u.cOff / 4u + e]; }
  return x;
}

@compute @workgroup_size(WG)
fn column_block_sums4(@builtin(global_invocation_id) g: vec3u) {
  let j4 = g.x;
  let r0 = g.y * ROWS;
  if (4u * j4 >= u.d || r0 >= u.B) { return; }
  let r1 = min(r0 + ROWS, u.B);
  var s = vec4f(0.0);
  var q = vec4f(0.0);
  if (u.centered == 0u) {
    for (var r = r0; r < r1; r++) {
      let e = diff4(r, j4);
      s += e;
      q = fma(e, e, q);
    }
  } else {
    for (var r = r0; r < r1; r++) { s += diff4(r, j4); }
    let mean = s / f32(r1 - r0);
    for (var r = r0; r < r1; r++) {
      let e = diff4(r, j4) - mean;
      q = fma(e, e, q);
    }
  }
  let o = 2u * (g.y * u.d + 4u * j4);
  for (var c = 0u; c < 4u; c++) {
    out[o + 2u * c] = s[c];
    out[o + 2u * c + 1u] = q[c];
  }
}

@compute @workgroup_size(WG)
fn column_merge(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  if (j >= um.d) { return; }
  var count = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  for (var r0 = 0u; r0 < um.B; r0 += ROWS) {
    let o = 2u * ((r0 / ROWS) * um.d + j);
    let q = blocksIn[o + 1u];
    if (um.centered == 0u) {
      m2 += q;
      continue;
    }
    let nb = f32(min(ROWS, um.B - r0));
    let total = count + nb;
    let delta = blocksIn[o] / nb - mean;
    mean += delta * (nb / total);
    m2 += q + delta * delta * (count * nb / total);
    count = total;
  }
  merged[um.outRow * um.d + j] = m2;
}

@compute @workgroup_size(WG)
fn reduce_terms(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let t = w.x;
  if (t >= ur.T) { return; }
  var s = 0.0;
  for (var j = l.x; j < ur.d; j += WG) { s += partials[t * ur.d + j]; }
  scratch[l.x] = s;
  var stride = WG / 2u;
  loop {
    if (stride == 0u) { break; }
    workgroupBarrier();
    if (l.x < stride) { scratch[l.x] = scratch[l.x] + scratch[l.x + stride]; }
    stride = stride / 2u;
  }
  if (l.x == 0u) { terms[t] = scratch[0]; }
}
