// mp: one iteration of matching pursuit for the MP-SAE (Costa et al. 2025; lib/sae/mp/reference.ts
// `mpIteration` is the TypeScript twin). Tied weights: the atoms are the decoder rows.
//
// Bindings: 0 decW    array<f32>  [n, d]   atoms (unit-norm decoder rows), read only
//           1 r       array<f32>  [B, d]   residual of each row (starts as xs), updated in place
//           2 slotIdx array<u32>  [B, K]   code slots in pick order (0xFFFFFFFF = unused)
//           3 slotVal array<f32>  [B, K]   code values (a re-picked atom adds to its slot)
//           4 pickIdx array<u32>  [B, K]   atom of pick t (for the backward pass)
//           5 pickVal array<f32>  [B, K]   coefficient a_t of pick t
//           6 info    array<u32>  [B, 4]   per row: slots used, done flag, picks made, bits of the f32 ‖r‖²
//           7 u       Params
//           8 scores  array<f32>  [rows, n] mp_pick only: c = r·decWᵀ of this row chunk
//                                           (kernels/encoder_gemm.wgsl with b_dec = 0)
//
// Two variants of one iteration, both one workgroup per batch row b = u.rowOffset + local row
// (grid: rows in x, wrapped into y past u.row_stride):
//   mp_step  (fused)  every invocation scores a strided share of the atoms itself,
//                     c_i = Σ_j decW[i,j]·r[b,j]: no score buffer, but every row re-reads all of
//                     decW (slow where the GEMM is fast; kept as the simple reference variant).
//   mp_pick  (gemm)   the scores come from the encoder GEMM run on r just before.
// Then (finish_row): the best atom (largest c, ties → lower index); if c ≤ 0 or c² ≤ u.minCorr2·‖r‖²
// the row is done (no atom correlates positively beyond f32 rounding: MP_MIN_CORRELATION). Otherwise a = c is recorded as pick t = info.picks and added to the
// atom's slot (a new slot at the end, or the existing one — a re-pick ends the row, as in the
// reference), r ← r − a·decW[i], ‖r‖² is reduced, and the row is done when ‖r‖² < u.eps2 or the
// atom was re-picked. Rows already done are skipped. The host runs k iterations in one submit
// after setting r = xs and the slots/picks/info to empty (lib/sae/mp/pursuit_gpu.ts).

override WG: u32 = 64;

struct Params {
  rows: u32,
  d: u32,
  n: u32,
  K: u32,
  eps2: f32,
  row_stride: u32,
  rowOffset: u32,
  minCorr2: f32,
}

@group(0) @binding(0) var<storage, read> decW: array<f32>;
@group(0) @binding(1) var<storage, read_write> r: array<f32>;
@group(0) @binding(2) var<storage, read_write> slotIdx: array<u32>;
@group(0) @binding(3) var<storage, read_write> slotVal: array<f32>;
@group(0) @binding(4) var<storage, read_write> pickIdx: array<u32>;
@group(0) @binding(5) var<storage, read_write> pickVal: array<f32>;
@group(0) @binding(6) var<storage, read_write> info: array<u32>;
@group(0) @binding(7) var<uniform> u: Params;
@group(0) @binding(8) var<storage, read> scores: array<f32>;

var<workgroup> bestVal: array<f32, WG>;
var<workgroup> bestIdx: array<u32, WG>;
var<workgroup> sums: array<f32, WG>;
var<workgroup> wDone: u32;
var<workgroup> wAtom: u32;
var<workgroup> wCoef: f32;
var<workgroup> wRepick: u32;

// a beats b: larger value, ties → lower index (an index of 0xFFFFFFFF never wins a tie).
fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
  return va > vb || (va == vb && ia < ib);
}

// Whether row b is already done (uniform across the workgroup).
fn row_done(b: u32, lid: u32) -> bool {
  if (lid == 0u) { wDone = info[b * 4u + 1u]; }
  return workgroupUniformLoad(&wDone) != 0u;
}

// Reduce the invocations' bests in bestVal/bestIdx, record the pick, update r and ‖r‖².
fn finish_row(b: u32, lid: u32) {
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s && better(bestVal[lid + s], bestIdx[lid + s], bestVal[lid], bestIdx[lid])) {
      bestVal[lid] = bestVal[lid + s];
      bestIdx[lid] = bestIdx[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let a = bestVal[0];
    let atom = bestIdx[0];
    if (!(a > 0.0 && a * a > u.minCorr2 * bitcast<f32>(info[b * 4u + 3u]))) {
      info[b * 4u + 1u] = 1u;
      wAtom = 0xFFFFFFFFu;
    } else {
      let base = b * u.K;
      let t = info[b * 4u + 2u];
      pickIdx[base + t] = atom;
      pickVal[base + t] = a;
      info[b * 4u + 2u] = t + 1u;
      let used = info[b * 4u];
      var repick = 0u;
      for (var s = 0u; s < used; s++) {
        if (slotIdx[base + s] == atom) {
          slotVal[base + s] += a;
          repick = 1u;
        }
      }
      if (repick == 0u) {
        slotIdx[base + used] = atom;
        slotVal[base + used] = a;
        info[b * 4u] = used + 1u;
      }
      wAtom = atom;
      wCoef = a;
      wRepick = repick;
    }
  }
  let atom = workgroupUniformLoad(&wAtom);
  if (atom == 0xFFFFFFFFu) { return; }
  let a = workgroupUniformLoad(&wCoef);
  let rb = b * u.d;
  let wa = atom * u.d;
  var q = 0.0;
  for (var j = lid; j < u.d; j += WG) {
    let v = r[rb + j] - a * decW[wa + j];
    r[rb + j] = v;
    q += v * v;
  }
  sums[lid] = q;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { sums[lid] += sums[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    info[b * 4u + 3u] = bitcast<u32>(sums[0]);
    if (sums[0] < u.eps2 || wRepick != 0u) { info[b * 4u + 1u] = 1u; }
  }
}

@compute @workgroup_size(WG)
fn mp_step(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let local = wg.y * u.row_stride + wg.x;
  if (local >= u.rows) { return; } // uniform: depends on the workgroup only
  let b = u.rowOffset + local;
  if (row_done(b, lid)) { return; }
  // increasing i: strict > keeps the lowest index of this invocation's share
  let rb = b * u.d;
  var bv = -3.4e38;
  var bi = 0xFFFFFFFFu;
  for (var i = lid; i < u.n; i += WG) {
    var c = 0.0;
    let wi = i * u.d;
    for (var j = 0u; j < u.d; j++) { c += decW[wi + j] * r[rb + j]; }
    if (c > bv) { bv = c; bi = i; }
  }
  bestVal[lid] = bv;
  bestIdx[lid] = bi;
  finish_row(b, lid);
}

@compute @workgroup_size(WG)
fn mp_pick(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let local = wg.y * u.row_stride + wg.x;
  if (local >= u.rows) { return; }
  let b = u.rowOffset + local;
  if (row_done(b, lid)) { return; }
  let sb = local * u.n;
  var bv = -3.4e38;
  var bi = 0xFFFFFFFFu;
  for (var i = lid; i < u.n; i += WG) {
    let c = scores[sb + i];
    if (c > bv) { bv = c; bi = i; }
  }
  bestVal[lid] = bv;
  bestIdx[lid] = bi;
  finish_row(b, lid);
}
