// loss: deterministic reductions for the SAE losses (Arbor SAE contract, "Reconstruction and loss").
// Two passes, fixed summation order, no float atomics: the same inputs give bitwise the same sums.
//
// Entry column_sums — per column j of a [B, d] difference e = a − bScale·b + cScale·c:
//   out[outRow·d + j] = Σ_b (e[b, j] − mean_b e[·, j])²  when centered, else Σ_b e[b, j]².
//   Bindings: 0 a    array<f32>  [.., B, d]  read at element offset aOff
//             1 b    array<f32>  [.., B, d]  read at bOff
//             1 b    (ignored when bScale = 0), 2 c (ignored when cScale = 0): bind any buffer then
//             2 c    array<f32>  [.., B, d]  read at cOff
//             3 out  array<f32>  [T, d]      per-column partial sums, row outRow
//             4 u    ColParams
//   One invocation per column walks the B rows in order (twice when centered: mean, then squares).
//   Grid: ceil(d / WG).
//   Uses: totalVar (a = xs, bScale = 0, centered); level error (a = x̂s_l, b = xs);
//   AuxK numerator (a = ê, b = xs, c = x̂s_l: ê − r); AuxK denominator (a = xs, b = x̂s_l,
//   centered: r = xs − x̂s_l about its batch mean).
//
// Entry reduce_terms — terms[t] = Σ_j partials[t·d + j] for t < T.
//   Bindings: 0 partials array<f32> [T, d]; 1 terms array<f32> [T]; 2 u RedParams.
//   One workgroup per term: each invocation sums a strided set of columns in order, then a
//   fixed-shape tree in workgroup memory. Grid: T.

override WG: u32 = 64;

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

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> terms: array<f32>;
@group(0) @binding(2) var<uniform> ur: RedParams;

var<workgroup> scratch: array<f32, WG>;

fn diff(row: u32, j: u32) -> f32 {
  let e = row * u.d + j;
  return a[u.aOff + e] - u.bScale * bm[u.bOff + e] + u.cScale * cm[u.cOff + e];
}

@compute @workgroup_size(WG)
fn column_sums(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  if (j >= u.d) { return; }
  var mean = 0.0;
  if (u.centered != 0u) {
    var s = 0.0;
    for (var r = 0u; r < u.B; r++) { s += diff(r, j); }
    mean = s / f32(u.B);
  }
  var q = 0.0;
  for (var r = 0u; r < u.B; r++) {
    let e = diff(r, j) - mean;
    q = fma(e, e, q);
  }
  out[u.outRow * u.d + j] = q;
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
