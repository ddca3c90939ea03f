// loss: deterministic reductions for the SAE losses (Arbor SAE contract, "Reconstruction and loss").
// Two passes, fixed summation order, no float atomics: the same inputs give bitwise the same sums.
//
// Entry column_block_sums — for each term z of the dispatch (grid z), column j and block b of ROWS
// consecutive rows of a [B, d] difference e = a − bScale·bm + cScale·c, each read at the term's
// element offset into its binding:
//   blocks[2·((t·NB + b)·d + j)]     = s = Σ_{rows of b} e[r, j]         (t = the term's output index)
//   blocks[2·((t·NB + b)·d + j) + 1] = q = Σ (e[r, j] − s / rows_b)²  when centered, else Σ e[r, j]².
//   Bindings: 0 a    array<f32>  [.., B, d]
//             1 bm   array<f32>  [.., B, d]  (read only by terms with bScale ≠ 0)
//             2 c    array<f32>  [.., B, d]  (read only by terms with cScale ≠ 0)
//             3 blocks array<f32> [T, NB, d, 2] scratch, NB = ceil(B / ROWS), a region per term
//             4 u    ColParams: B, d, NB, then each term of the dispatch (see term_desc)
//   One invocation per (column, block, term) walks the block's rows in order (twice when centered).
//   Grid: (ceil(d / WG), NB, terms of the dispatch).
// Entry column_block_sums4 — the same four columns per invocation, on vec4 views (d and the offsets
//   multiples of 4; llvmpipe makes one load per lane for a vec4 as for an f32), one pass when not
//   centered; per column the same operations in the same order, so the same sums.
//   Bindings 5-7: with LOSS_TEX, a, bm, c as matrix textures (see LOSS_TEX below).
//   Grid: (ceil(d / (4·WG)), NB, terms of the dispatch).
// Uses (lib/sae/ops/loss.ts), terms that read the same bindings sharing a dispatch: totalVar
// (a = xs, bScale = 0, centered); the level errors (a = x̂s_l, bm = xs) with the AuxK denominators
// (a = x̂s_l, bm = xs, centered: r = xs − x̂s_l about its batch mean, its sign flipped, which leaves
// every square and so the sums bitwise the same); each AuxK numerator (a = ê, bm = xs, c = x̂s_l:
// ê − r). A Tree SAE's 13 terms took 26 dispatches, one after the other through one scratch; now 6.
// The term comes from the workgroup id, which the compiler knows is uniform. (Choosing a term's
// bindings per element instead cost 3× on llvmpipe, which runs both sides of a branch.)
//
// Entry column_merge — merged[t·d + j] = term t's column sum over all B rows, merging its NB blocks in
//   order: q summed, or when centered (bit t of um.centered) Chan et al.'s pairwise update of
//   (count, mean, M2), so the result is Σ_b (e − mean_b e)² without a serial pass over all B rows.
//   Bindings: 0 blocksIn array<f32> [T, NB, d, 2]; 1 merged array<f32> [T, d]; 2 um MergeParams.
//   Grid: (ceil(d / WG), T).
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

// Most terms one column_block_sums dispatch takes: 8 level errors and 8 AuxK denominators.
const MAX_DISPATCH_TERMS: u32 = 16u;
// Inputs the dispatch's terms read: 1 (a), 2 (a, bm) or 3. A pipeline constant, so that the reads
// no term makes compile away: llvmpipe may run a branch's reads with no lane taking it (the Tree
// SAE's loss sums at B = 4 096, d = 768 through textures: best of 5, 157–188 → 128–147 ms; TopK's
// unchanged, within a noisy VM's spread).
override READS: u32 = 3u;

struct ColParams {
  B: u32, d: u32, nb: u32, pad0: u32,
  desc: array<vec4u, 2u * MAX_DISPATCH_TERMS>,
}

struct MergeParams { B: u32, d: u32, nb: u32, centered: u32 }

struct RedParams { d: u32, T: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> bm: array<f32>;
@group(0) @binding(2) var<storage, read> cm: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> u: ColParams;
@group(0) @binding(0) var<storage, read> blocksIn: array<f32>;
@group(0) @binding(1) var<storage, read_write> merged: array<f32>;
@group(0) @binding(2) var<uniform> um: MergeParams;

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> terms: array<f32>;
@group(0) @binding(2) var<uniform> ur: RedParams;

var<workgroup> scratch: array<f32, WG>;

// Term z of a dispatch: desc[2z] = (aOff, bOff, cOff, output index t), desc[2z + 1] = (bScale,
// cScale as f32 bits, centered, 0).
struct Term { aOff: u32, bOff: u32, cOff: u32, t: u32, bScale: f32, cScale: f32, centered: bool }

fn term_desc(z: u32) -> Term {
  let o = u.desc[2u * z];
  let f = u.desc[2u * z + 1u];
  return Term(o.x, o.y, o.z, o.w, bitcast<f32>(f.x), bitcast<f32>(f.y), f.z != 0u);
}

// e[row, j] of term t; bm and c are read only when their scale is not 0 (a uniform branch).
fn diff(t: Term, row: u32, j: u32) -> f32 {
  let e = row * u.d + j;
  var x = a[t.aOff + e];
  if (READS > 1u && t.bScale != 0.0) { x = x - t.bScale * bm[t.bOff + e]; }
  if (READS > 2u && t.cScale != 0.0) { x = x + t.cScale * cm[t.cOff + e]; }
  return x;
}

// Where term t's block b of column j goes in the [T, NB, d, 2] scratch.
fn block_at(t: u32, b: u32, j: u32) -> u32 {
  return 2u * ((t * u.nb + b) * u.d + j);
}

@compute @workgroup_size(WG)
fn column_block_sums(@builtin(global_invocation_id) g: vec3u, @builtin(workgroup_id) w: vec3u) {
  let j = g.x;
  let r0 = g.y * ROWS;
  if (j >= u.d || r0 >= u.B) { return; }
  let t = term_desc(w.z);
  let r1 = min(r0 + ROWS, u.B);
  var s = 0.0;
  for (var r = r0; r < r1; r++) { s += diff(t, r, j); }
  var mean = 0.0;
  if (t.centered) { mean = s / f32(r1 - r0); }
  var q = 0.0;
  for (var r = r0; r < r1; r++) {
    let e = diff(t, r, j) - mean;
    q = fma(e, e, q);
  }
  let o = block_at(t.t, g.y, j);
  out[o] = s;
  out[o + 1u] = q;
}

@group(0) @binding(0) var<storage, read> a4: array<vec4f>;
@group(0) @binding(1) var<storage, read> bm4: array<vec4f>;
@group(0) @binding(2) var<storage, read> cm4: array<vec4f>;

// With LOSS_TEX (software adapters), column_block_sums4 reads a, bm and c through their matrix
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

// diff for columns 4·j4 .. 4·j4 + 3 (d and the offsets multiples of 4).
fn diff4(t: Term, row: u32, j4: u32) -> vec4f {
  if (LOSS_TEX) {
    var x = texel_a(t.aOff / u.d + row, j4);
    if (READS > 1u && t.bScale != 0.0) { x = x - t.bScale * texel_b(t.bOff / u.d + row, j4); }
    if (READS > 2u && t.cScale != 0.0) { x = x + t.cScale * texel_c(t.cOff / u.d + row, j4); }
    return x;
  }
  let e = (row * u.d) / 4u + j4;
  var x = a4[t.aOff / 4u + e];
  if (READS > 1u && t.bScale != 0.0) { x = x - t.bScale * bm4[t.bOff / 4u + e]; }
  if (READS > 2u && t.cScale != 0.0) { x = x + t.cScale * cm4[t.cOff / 4u + e]; }
  return x;
}

@compute @workgroup_size(WG)
fn column_block_sums4(@builtin(global_invocation_id) g: vec3u, @builtin(workgroup_id) w: vec3u) {
  let j4 = g.x;
  let r0 = g.y * ROWS;
  if (4u * j4 >= u.d || r0 >= u.B) { return; }
  let t = term_desc(w.z);
  let r1 = min(r0 + ROWS, u.B);
  var s = vec4f(0.0);
  var q = vec4f(0.0);
  if (!t.centered) {
    for (var r = r0; r < r1; r++) {
      let e = diff4(t, r, j4);
      s += e;
      q = fma(e, e, q);
    }
  } else {
    for (var r = r0; r < r1; r++) { s += diff4(t, r, j4); }
    let mean = s / f32(r1 - r0);
    for (var r = r0; r < r1; r++) {
      let e = diff4(t, r, j4) - mean;
      q = fma(e, e, q);
    }
  }
  let o = block_at(t.t, g.y, 4u * j4);
  for (var c = 0u; c < 4u; c++) {
    out[o + 2u * c] = s[c];
    out[o + 2u * c + 1u] = q[c];
  }
}

@compute @workgroup_size(WG)
fn column_merge(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  let t = g.y;
  if (j >= um.d) { return; }
  let centered = ((um.centered >> t) & 1u) != 0u;
  var count = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  for (var r0 = 0u; r0 < um.B; r0 += ROWS) {
    let o = 2u * ((t * um.nb + r0 / ROWS) * um.d + j);
    let q = blocksIn[o + 1u];
    if (!centered) {
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
  merged[t * um.d + j] = m2;
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
