// batch_topk: the batch threshold of BatchTopK training (Arbor SAE contract, "Selection"): the
// k·B largest max(pre, 0) over the whole batch (ties → lower row, then lower index), then each row
// keeps at most K of its winners. The final per-row placement is topk.wgsl's select_batch.
//
// Keys are the order-preserving u32 image of max(pre, 0) (as in topk.wgsl). A radix select over the
// batch finds the want-th largest key T (want = min(k·B, B·n)), 8 bits per pass, the histogram
// summed over all row chunks with integer atomics (exact, so order-independent).
//
// Bindings: 0 pre    array<f32>          [rows, n]  a row chunk (batch rows rowOffset..)
//           1 state  array<atomic<u32>>  [8]        [0] prefix, [1] remaining at prefix, [2] done,
//                                                   [3] 1 = take every key ≥ prefix (early stop),
//                                                   [4..7] unused
//           2 ghist  array<atomic<u32>>  [256]      batch histogram of the current pass
//           3 rowCnt array<u32>          [2, B]     per row: keys above T (or ≥ T), keys equal to T
//           4 info   array<u32>          [1 + B]    out: [0] T, [1 + b] slots row b keeps
//           5 u      Params
// Every entry but bt_min_kept binds all six (the host binds buffers by position).
// Entries, in order: bt_init (1 invocation) → for pass 0..3: bt_hist (per chunk, one workgroup per
// row) + bt_resolve (1 invocation) → bt_count (per chunk) → bt_rows (1 invocation) → select_batch.
// Passes after an early stop return at once (state[2] = 1).
//
// Entry bt_min_kept — the smallest kept positive value (for the inference threshold's EMA), 0 if none.
//   Bindings: 0 keptVal array<f32> [B, K]; 1 minOut array<f32> [1]; 2 um MinParams. One workgroup.

override WG: u32 = 64;

struct Params { rows: u32, n: u32, B: u32, K: u32, rowOffset: u32, want: u32, pass_: u32, row_stride: u32 }

@group(0) @binding(0) var<storage, read> pre: array<f32>;
@group(0) @binding(1) var<storage, read_write> state: array<atomic<u32>, 8>;
@group(0) @binding(2) var<storage, read_write> ghist: array<atomic<u32>, 256>;
@group(0) @binding(3) var<storage, read_write> rowCnt: array<u32>;
@group(0) @binding(4) var<storage, read_write> info: array<u32>;
@group(0) @binding(5) var<uniform> u: Params;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> flag: u32;

fn key_of(v: f32) -> u32 {
  let b = bitcast<u32>(select(v, 0.0, v == 0.0));
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn relu_key(i: u32) -> u32 { return key_of(max(pre[i], 0.0)); }

// Statically use bindings 0..5 so every entry has the same bind group layout (the host binds
// buffers by position).
fn touch_all() {
  _ = arrayLength(&pre);
  _ = arrayLength(&rowCnt);
  _ = arrayLength(&info);
  _ = &state;
  _ = &ghist;
  _ = u.n;
}

@compute @workgroup_size(1)
fn bt_init() {
  touch_all();
  for (var i = 0u; i < 8u; i++) { atomicStore(&state[i], 0u); }
  atomicStore(&state[1], u.want);
  for (var b = 0u; b < 256u; b++) { atomicStore(&ghist[b], 0u); }
}

@compute @workgroup_size(WG)
fn bt_hist(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  touch_all();
  let r = w.y * u.row_stride + w.x;
  if (r >= u.rows) { return; }
  if (l.x == 0u) { flag = atomicLoad(&state[2]); }
  if (workgroupUniformLoad(&flag) != 0u) { return; }
  let shift = 24u - 8u * u.pass_;
  let mask = select(0u, 0xffffffffu << (shift + 8u), u.pass_ > 0u);
  let prefix = atomicLoad(&state[0]);
  for (var b = l.x; b < 256u; b += WG) { atomicStore(&hist[b], 0u); }
  workgroupBarrier();
  for (var i = l.x; i < u.n; i += WG) {
    let key = relu_key(r * u.n + i);
    if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 255u], 1u); }
  }
  workgroupBarrier();
  for (var b = l.x; b < 256u; b += WG) {
    let h = atomicLoad(&hist[b]);
    if (h != 0u) { atomicAdd(&ghist[b], h); }
  }
}

@compute @workgroup_size(1)
fn bt_resolve() {
  touch_all();
  if (atomicLoad(&state[2]) != 0u) { return; }
  let shift = 24u - 8u * u.pass_;
  var remaining = atomicLoad(&state[1]);
  var prefix = atomicLoad(&state[0]);
  var b = 255u;
  loop {
    let h = atomicLoad(&ghist[b]);
    if (h >= remaining || b == 0u) {
      prefix = prefix | (b << shift);
      if (h == remaining) {
        atomicStore(&state[2], 1u);
        atomicStore(&state[3], 1u);
      }
      break;
    }
    remaining -= h;
    b -= 1u;
  }
  if (u.pass_ == 3u) { atomicStore(&state[2], 1u); }
  atomicStore(&state[0], prefix);
  atomicStore(&state[1], remaining);
  for (var c = 0u; c < 256u; c++) { atomicStore(&ghist[c], 0u); }
}

var<workgroup> cntGt: atomic<u32>;
var<workgroup> cntEq: atomic<u32>;

@compute @workgroup_size(WG)
fn bt_count(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  touch_all();
  let r = w.y * u.row_stride + w.x;
  if (r >= u.rows) { return; }
  let T = atomicLoad(&state[0]);
  let allGE = atomicLoad(&state[3]) != 0u;
  if (l.x == 0u) {
    atomicStore(&cntGt, 0u);
    atomicStore(&cntEq, 0u);
  }
  workgroupBarrier();
  var gt = 0u;
  var eq = 0u;
  for (var i = l.x; i < u.n; i += WG) {
    let key = relu_key(r * u.n + i);
    if (key > T || (allGE && key == T)) { gt++; } else if (key == T) { eq++; }
  }
  atomicAdd(&cntGt, gt);
  atomicAdd(&cntEq, eq);
  workgroupBarrier();
  if (l.x == 0u) {
    let row = u.rowOffset + r;
    rowCnt[row] = atomicLoad(&cntGt);
    rowCnt[u.B + row] = atomicLoad(&cntEq);
  }
}

@compute @workgroup_size(1)
fn bt_rows() {
  touch_all();
  // Ties at T go to the lowest flat index: rows in order, each taking what is left of `need`.
  var need = select(atomicLoad(&state[1]), 0u, atomicLoad(&state[3]) != 0u);
  info[0] = atomicLoad(&state[0]);
  for (var b = 0u; b < u.B; b++) {
    let e = min(need, rowCnt[u.B + b]);
    need -= e;
    info[1u + b] = min(u.K, rowCnt[b] + e);
  }
}

struct MinParams { count: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> keptVal: array<f32>;
@group(0) @binding(1) var<storage, read_write> minOut: array<f32>;
@group(0) @binding(2) var<uniform> um: MinParams;

// Above every finite f32: marks "no positive value seen".
const NONE: f32 = 3.0e38;
var<workgroup> mins: array<f32, WG>;

@compute @workgroup_size(WG)
fn bt_min_kept(@builtin(local_invocation_id) l: vec3u) {
  var m = NONE;
  for (var i = l.x; i < um.count; i += WG) {
    let v = keptVal[i];
    if (v > 0.0) { m = min(m, v); }
  }
  mins[l.x] = m;
  var stride = WG / 2u;
  loop {
    if (stride == 0u) { break; }
    workgroupBarrier();
    if (l.x < stride) { mins[l.x] = min(mins[l.x], mins[l.x + stride]); }
    stride = stride / 2u;
  }
  if (l.x == 0u) { minOut[0] = select(mins[0], 0.0, mins[0] == NONE); }
}
