// topk: per-row top-k selection of SAE codes — plain, tree-gated per layer, and AuxK candidates
// (Arbor SAE contract, "Selection" and "AuxK").
//
// Bindings: 0 pre     array<vec4f>  [rows, n]  pre-activations of this row chunk (row r = batch row
//                                              rowOffset + r), row-major f32 read as vec4: the buffer's
//                                              size must be a multiple of 16 bytes
//           1 layers  array<vec4u>  [L]        per layer (offset o_l, size s_l, k_l, first slot of the layer)
//           2 parents array<i32>    [n]        tree parent of each feature; o_l (the layer's offset) = root.
//                                              Ignored unless GATED != 0 (bind any 4-byte buffer then).
//           3 idx     array<u32>    [B, K]     code slots: feature index, 0xFFFFFFFF = unused
//           4 val     array<f32>    [B, K]     code slots: value
//           5 u       Params
//           9 preT    texture_2d<f32> [n/4, rows] rgba32float  the same pre, read instead of binding 0
//                                              when PRE_TEX = 1 (n % 4 = 0); any texture otherwise
//          10 cmax    array<f32>    [rows, ceil(n/64)]  select_topk with CMAX_IN = 1: the largest pre of
//                                              each 64 consecutive features of each row (written by
//                                              the encoder GEMM, kernels/encoder_gemm_sg.wgsl); any
//                                              buffer otherwise (the other entries only declare it)
//          11 parentsT texture_2d<f32>  rgba32float: with PARENTS_TEX, binding 2's parents, four per
//                                              texel (see parents_vec); any such texture otherwise
//           6 extra   array<u32>               select_aux: [1 + 2n] dead-feature list from
//                                              kernels/dead_list.wgsl: [count, dead feature indices
//                                              ascending, ranks]; select_batch: batch info;
//                                              select_topk with CHILD_LISTS = 1: [2n + 1] the tree's
//                                              children by parent (see CHILD_LISTS)
//   select_aux only:
//           7 auxIdx  array<u32>    [B, KA]    AuxK slots (KA = u.kAux), 0xFFFFFFFF = unused
//           8 auxVal  array<f32>    [B, KA]
//
// Entry select_topk: for each layer in order (L = 1 for topk/matryoshka), score_i = pre_i if feature i
//   is eligible (ungated, or its parent is the root, or the parent's value on this row, chosen by an
//   earlier layer, exceeds FIRE_THRESHOLD) else 0; the k_l best scores of the layer (ties → lower
//   index) go to slots [first slot, first slot + k_l) in descending order, val = max(score, 0).
// Entry select_batch (BatchTopK, after kernels/batch_topk.wgsl found the batch threshold): binding 6
//   holds [threshold key T, k_row for each batch row]; layers = one layer {0, n, K, 0}; the row
//   keeps its k_row largest max(pre, 0) among keys ≥ T (ties → lower index) in slots [0, k_row) of
//   K, the rest unused.
// Entry select_aux: candidates = dead features of layer u.auxLayer that are eligible (gate from the
//   row's main slots), enumerated from the dead list (so the cost follows the dead count); the top
//   min(u.kAux, #candidates) pre values (ties → lower index) in ascending feature order, auxVal =
//   max(pre, 0); the rest of the row's KA slots are unused. See select_aux_layer: keys cached in
//   workgroup memory, or with AUX_PRIVATE (software adapters) in each invocation's private memory
//   (or listed in order above the lane filter's bound), threshold by bisection, winners written in
//   order from a prefix count.
//
// One workgroup handles one row (grid: rows in x, wrapped into y past u.row_stride). Main and
// batch selections: a layer of at most SMALL_MAX positions has all its candidates placed by pairwise ranks. Larger
// ones first try threshold filters + exact rank: from chunk maxima when the layer is long and
// read as vec4 (try_chunked), else from each invocation's best keys (try_fast); when neither can
// decide (heavy ties, fewer than k candidates), the k-th best key is found by a radix select over the
// order-preserving u32 image of the scores (4 passes of 8 bits, workgroup histogram, stopping early
// when a bin holds exactly the remaining count), then the winners are collected (ties at the
// threshold by index order via a prefix count over contiguous per-invocation chunks) and placed by
// exact rank. k ≤ MAX_K per layer. The output is independent of the order of the workgroup
// atomics, hence deterministic.

override WG: u32 = 64;
// 1 = read pre through the texture at binding 9: llvmpipe turns a texel fetch into one SIMD gather,
// a storage load into a loop over the lanes (top-k of 1 024 rows × 24 576: 169–178 → 119–138 ms).
override PRE_TEX: u32 = 0u;
// 1 = tree parent gate applies (a pipeline constant so the ungated kernel skips the gate entirely).
override GATED: u32 = 0u;
// Words of the per-row "fired" bitset: covers features [0, 32·FIRE_WORDS), i.e. every possible parent.
override FIRE_WORDS: u32 = 1u;
// Up to this many winners are placed by pairwise ranks instead of a bitonic sort: O(count²/WG)
// compares per invocation but no barriers, which cost most on llvmpipe (with the pairwise T below,
// AuxK over 12 288 dead features went from 449 to 309 ms per 1 024 rows; ~300 winners per row).
const RANK_MAX: u32 = 512u;
// Layers (and dead lists) of at most this many positions skip the threshold filter: every
// candidate is collected and ranked pairwise (s² compares per row: at s = 512 that made top-k of
// 256 rows take 171 ms on lavapipe, against 13 ms through the filter; 64 measured best).
const SMALL_MAX: u32 = 64u;

// 1 = select_topk reads chunk maxima from binding 10 for its first layer (try_cmax).
override CMAX_IN: u32 = 0u;
// Features per chunk of binding 10.
const CMAX_COLS: u32 = 64u;
// Chunk filter: at most this many chunks per layer (half the scratch), at most CHUNK_READS_MAX
// vec4 reads per chunk (a chunk of 64 values at most, unless the
// layer needs more than CHUNK_CAP chunks), and at least CHUNKS_PER_K·k chunks, so that few chunks
// other than the k holding the winners reach the threshold.
const CHUNK_CAP: u32 = 768u;
const CHUNK_READS_MAX: u32 = 16u;
const CHUNKS_PER_K: u32 = 8u;

// Largest k per layer (the contract's k ≤ 256 and auxK = 256).
const MAX_K: u32 = 256u;
// Candidate buffer of the fast path (and the winners of the radix path).
const MAX_C: u32 = 1024u;
// FIRE_THRESHOLD = 1e-3 (ref: a feature fires when its activation exceeds it). The TS reference
// compares f32 values with the double 1e-3; f32(1e-3) rounds up, so that test is `>=` here.
const FIRE_THRESHOLD: f32 = 1e-3;
const NO_SLOT: u32 = 0xffffffffu;

struct Params {
  rows: u32, n: u32, K: u32, L: u32,
  rowOffset: u32, pad3: u32, row_stride: u32, auxLayer: u32,
  kAux: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<storage, read> pre4: array<vec4f>;
@group(0) @binding(1) var<storage, read> layers: array<vec4u>;
@group(0) @binding(2) var<storage, read> parents: array<i32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> val: array<f32>;
@group(0) @binding(5) var<uniform> u: Params;
@group(0) @binding(6) var<storage, read> extra: array<u32>;
@group(0) @binding(7) var<storage, read_write> auxIdx: array<u32>;
@group(0) @binding(8) var<storage, read_write> auxVal: array<f32>;
@group(0) @binding(9) var preT: texture_2d<f32>;
// With PARENTS_TEX (software adapters, gated layouts), the parents come from binding 11, an
// rgba32float texture of PARENT_TEX_W texels per row holding parents 4q .. 4q + 3 at texel
// (q % PARENT_TEX_W, q / PARENT_TEX_W) (as floats, exact below 2^24): a texel fetch is one SIMD
// gather on llvmpipe, where a storage load loops over the lanes. Placeholder otherwise.
override PARENTS_TEX: bool = false;
const PARENT_TEX_W: u32 = 1024u;
@group(0) @binding(11) var parentsT: texture_2d<f32>;

// The parents of features 4q .. 4q + 3.
fn parents_vec(q: u32) -> vec4u {
  if (PARENTS_TEX) {
    return vec4u(textureLoad(parentsT, vec2i(i32(q % PARENT_TEX_W), i32(q / PARENT_TEX_W)), 0));
  }
  let i = 4u * q;
  return vec4u(u32(parents[i]), u32(parents[i + 1u]), u32(parents[i + 2u]), u32(parents[i + 3u]));
}

// The parent of feature i.
fn parent_of(i: u32) -> u32 {
  if (PARENTS_TEX) { return parents_vec(i / 4u)[i % 4u]; }
  return u32(parents[i]);
}
@group(0) @binding(10) var<storage, read> cmaxIn: array<f32>;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> fired: array<atomic<u32>, FIRE_WORDS>;
// Candidates as vec4s: the pairwise rank loops read four keys (and indices) per load, a quarter of
// the per-lane loads llvmpipe makes of workgroup memory. Element p is [p / 4][p % 4].
var<workgroup> candIdx4: array<vec4u, MAX_C / 4u>;
var<workgroup> candKey4: array<vec4u, MAX_C / 4u>;
var<workgroup> wgU: u32;
// select_batch: the batch threshold key (binding 6's first word), read once per invocation.
var<private> batchT: u32;
var<workgroup> candCount: atomic<u32>;
var<workgroup> eqScan: array<u32, WG>;
// Selection state written by invocation 0: [0] threshold key T, [1] remaining count at T,
// [2] 1 when every key ≥ T is taken (early stop), [3] k to take, [4] prefix mask,
// [5] select_aux: the layer's first position in the dead list.
var<workgroup> st: array<u32, 6>;
var<workgroup> stDone: u32;
// Workgroup memory stays under WebGPU's guaranteed 16 KiB while FIRE_WORDS = 1 (lib/sae/ops/topk.ts
// gives the bitset what the device allows beyond the rest).
// Scratch: try_chunked keeps the largest key of each chunk in [0, CHUNK_CAP) and the chunks at
// or above the threshold from CHUNK_CAP (try_cmax the latter); the radix select of AuxK keeps
// the keys of up to SCRATCH candidates (0 = not eligible), read once from pre instead of once per
// pass through the dead list and the texture.
const SCRATCH: u32 = 2u * CHUNK_CAP;
var<workgroup> scratch: array<vec4u, SCRATCH / 4u>;
var<workgroup> takeScan: array<u32, WG>;
fn scratch_at(p: u32) -> u32 { return scratch[p / 4u][p % 4u]; }
fn set_scratch(p: u32, v: u32) { scratch[p / 4u][p % 4u] = v; }
var<workgroup> hitCount: atomic<u32>;

// Order-preserving map f32 → u32 (larger float ↔ larger key); -0 is mapped as +0.
fn key_of(v: f32) -> u32 {
  let b = bitcast<u32>(select(v, 0.0, v == 0.0));
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn value_of(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

fn cand_key_at(p: u32) -> u32 { return candKey4[p / 4u][p % 4u]; }
fn cand_idx_at(p: u32) -> u32 { return candIdx4[p / 4u][p % 4u]; }
fn set_cand(p: u32, i: u32, key: u32) {
  candIdx4[p / 4u][p % 4u] = i;
  candKey4[p / 4u][p % 4u] = key;
}

// 1 when candidate (kq, iq) at position q < count ranks before (ki, ii): larger key, or the same
// key and a smaller index (non-short-circuit & and |: no branches).
fn before(q: u32, count: u32, kq: u32, iq: u32, ki: u32, ii: u32) -> u32 {
  return select(0u, 1u, (q < count) & ((kq > ki) | ((kq == ki) & (iq < ii))));
}

// before for four candidates (ki, ii) at once.
fn before4(q: u32, count: u32, kq: u32, iq: u32, ki: vec4u, ii: vec4u) -> vec4u {
  let b = (vec4u(kq) > ki) | ((vec4u(kq) == ki) & (vec4u(iq) < ii));
  return select(vec4u(0u), vec4u(1u), b & vec4<bool>(q < count));
}

fn has_fired(f: u32) -> bool {
  let w = f / 32u;
  if (w >= FIRE_WORDS) { return false; }
  return (atomicLoad(&fired[w]) & (1u << (f % 32u))) != 0u;
}

fn mark_fired(f: u32) {
  let w = f / 32u;
  if (w < FIRE_WORDS) { atomicOr(&fired[w], 1u << (f % 32u)); }
}

// Parent gate of feature i in a layer starting at o.
fn eligible(i: u32, o: u32) -> bool {
  if (GATED == 0u) { return true; }
  let p = parent_of(i);
  return p == o || has_fired(p);
}

const MODE_MAIN: u32 = 0u;
const MODE_AUX: u32 = 1u;
const MODE_BATCH: u32 = 2u;

// Whether feature i takes part and its selection key. Main: always, key of the gated score. Aux:
// (a dead feature from the list) eligible, key of pre. Batch: key of max(pre, 0) at or above the batch threshold dead[0].
fn candidate(mode: u32, base: u32, i: u32, o: u32) -> vec2u {
  return candidate_of(mode, pre_at(base + i), i, o);
}

// Feature at position i of a layer starting at o: i itself, or for AuxK the (i − o)-th dead
// feature of the layer (the layer's part of the dead list starts at listLo).
var<private> listLo: u32;
fn feat(mode: u32, i: u32, o: u32) -> u32 {
  if (mode == MODE_AUX) { return extra[1u + listLo + (i - o)]; }
  return i;
}

// Elements 4p..4p+3 of the row-major pre chunk (bound as vec4 so aligned layers load four at a
// time), from the texture when PRE_TEX = 1 (texel (p mod n/4, p div n/4)).
fn pre_vec(p: u32) -> vec4f {
  if (PRE_TEX == 1u) {
    let n4 = u.n / 4u;
    return textureLoad(preT, vec2i(i32(p % n4), i32(p / n4)), 0);
  }
  return pre4[p];
}

// Element e of the row-major pre chunk.
fn pre_at(e: u32) -> f32 {
  return pre_vec(e / 4u)[e % 4u];
}

// Whether the four features i0 .. i0 + 3 (i0 % 4 == 0, all below n) take part in main mode:
// their parents are the root or fired (eligible, four at a time, without a branch per feature).
fn eligible4(i0: u32, o: u32) -> vec4<bool> {
  if (GATED == 0u) { return vec4<bool>(true); }
  let p = parents_vec(i0 / 4u);
  let w = p / 32u;
  let wc = min(w, vec4u(FIRE_WORDS - 1u));
  let words = vec4u(atomicLoad(&fired[wc.x]), atomicLoad(&fired[wc.y]), atomicLoad(&fired[wc.z]),
    atomicLoad(&fired[wc.w]));
  let on = ((words >> (p % vec4u(32u))) & vec4u(1u)) != vec4u(0u);
  return (p == vec4u(o)) | (on & (w < vec4u(FIRE_WORDS)));
}

// The main-mode cand_key of features i0 .. i0 + 3 (as eligible4) with pre values v.
fn cand_key4_main(v: vec4f, i0: u32, o: u32) -> vec4u {
  let e = eligible4(i0, o);
  return vec4u(key_of(select(0.0, v.x, e.x)), key_of(select(0.0, v.y, e.y)),
    key_of(select(0.0, v.z, e.z)), key_of(select(0.0, v.w, e.w)));
}

// Selection key of a candidate with pre value p, 0 (below every real key) when not a candidate.
fn cand_key(mode: u32, p: f32, i: u32, o: u32) -> u32 {
  let c = candidate_of(mode, p, i, o);
  return select(0u, c.y, c.x != 0u);
}

fn candidate_of(mode: u32, p: f32, i: u32, o: u32) -> vec2u {
  if (mode == MODE_AUX) {
    let ok = eligible(i, o);
    return vec2u(select(0u, 1u, ok), key_of(p));
  }
  if (mode == MODE_BATCH) {
    let key = key_of(max(p, 0.0));
    return vec2u(select(0u, 1u, key >= batchT), key);
  }
  return vec2u(1u, key_of(select(0.0, p, eligible(i, o))));
}

// An invocation's m ≤ 5 largest keys so far, in descending order (0 = none yet).
struct Top5 { a: u32, b: u32, c: u32, d: u32, e: u32 }

// Insert `key` into the kept keys (a no-op unless it beats the smallest).
fn keep(top: ptr<function, Top5>, key: u32) {
  if (key > (*top).e) {
    (*top).e = key;
    if ((*top).e > (*top).d) { let x = (*top).d; (*top).d = (*top).e; (*top).e = x; }
    if ((*top).d > (*top).c) { let x = (*top).c; (*top).c = (*top).d; (*top).d = x; }
    if ((*top).c > (*top).b) { let x = (*top).b; (*top).b = (*top).c; (*top).c = x; }
    if ((*top).b > (*top).a) { let x = (*top).a; (*top).a = (*top).b; (*top).b = x; }
  }
}

// Keys kept per invocation for a top k: m = ceil(k / WG), plus one when m > 1 (with WG·m = k
// exactly, T would be the smallest kept key: for k = 256 over 12 288 features ~650 keys reach it,
// against ~300 with one spare).
fn kept_per_lane(k: u32) -> u32 {
  let m0 = (k + WG - 1u) / WG;
  return select(m0, m0 + 1u, m0 > 1u);
}

// T = the k-th largest of the WG·m keys the invocations kept (each passes its own m largest),
// ranked pairwise: O((WG·m)²/WG) compares per invocation but no barriers (a bitonic sort's ~45
// barrier-separated stages cost more on llvmpipe). 0 when fewer than k keys were kept. Also
// resets candCount for the collection that follows. Uniform result.
fn kept_threshold(t: u32, m: u32, k: u32, top: Top5) -> u32 {
  candKey4[(t * m) / 4u][(t * m) % 4u] = top.a;
  if (m > 1u) { candKey4[(t * m + 1u) / 4u][(t * m + 1u) % 4u] = top.b; }
  if (m > 2u) { candKey4[(t * m + 2u) / 4u][(t * m + 2u) % 4u] = top.c; }
  if (m > 3u) { candKey4[(t * m + 3u) / 4u][(t * m + 3u) % 4u] = top.d; }
  if (m > 4u) { candKey4[(t * m + 4u) / 4u][(t * m + 4u) % 4u] = top.e; }
  if (t == 0u) {
    wgU = 0u;
    atomicStore(&candCount, 0u);
    atomicStore(&hitCount, 0u);
  }
  workgroupBarrier();
  // Each invocation ranks the keys it kept (positions t·m + j, four at a time against every kept
  // key as it is read): kept / 4 workgroup loads per invocation instead of m times as many.
  let kept = WG * m;
  let e0 = t * m;
  let mine = vec4u(top.a, top.b, top.c, top.d);
  let pos = vec4u(e0) + vec4u(0u, 1u, 2u, 3u);
  var rank = vec4u(0u);
  var rank5 = 0u;
  for (var f4 = 0u; 4u * f4 < kept; f4++) {
    let kv = candKey4[f4];
    let f = 4u * f4;
    rank += before4(f, kept, kv.x, f, mine, pos) + before4(f + 1u, kept, kv.y, f + 1u, mine, pos) +
      before4(f + 2u, kept, kv.z, f + 2u, mine, pos) + before4(f + 3u, kept, kv.w, f + 3u, mine, pos);
    if (m > 4u) {
      rank5 += before(f, kept, kv.x, f, top.e, e0 + 4u) +
        before(f + 1u, kept, kv.y, f + 1u, top.e, e0 + 4u) +
        before(f + 2u, kept, kv.z, f + 2u, top.e, e0 + 4u) +
        before(f + 3u, kept, kv.w, f + 3u, top.e, e0 + 4u);
    }
  }
  let hit = rank == vec4u(k - 1u);
  if (hit.x) { wgU = mine.x; }
  if (m > 1u && hit.y) { wgU = mine.y; }
  if (m > 2u && hit.z) { wgU = mine.z; }
  if (m > 3u && hit.w) { wgU = mine.w; }
  if (m > 4u && rank5 == k - 1u) { wgU = top.e; }
  return workgroupUniformLoad(&wgU);
}

// Add candidate i to the collection when its key reaches T (atomic slot; MAX_C caps the stores,
// the count goes on so that the caller sees the overflow).
fn collect(i: u32, key: u32, T: u32) {
  if (key >= T) {
    let p = atomicAdd(&candCount, 1u);
    if (p < MAX_C) { set_cand(p, i, key); }
  }
}

// The collected count, after every invocation collected (uniform).
fn collected_count(t: u32) -> u32 {
  workgroupBarrier();
  if (t == 0u) { wgU = atomicLoad(&candCount); }
  return workgroupUniformLoad(&wgU);
}

// Chunk filter (threshold from chunk maxima + exact rank), for layers read as vec4. The layer's
// vec4s are cut into chunks: in block b of WG·G vec4s, invocation t reads q = b·WG·G + t + WG·i
// (i < G), the same addresses the lane filter reads, and keeps the largest key of those 4·G values as
// chunk b·WG + t. T = the k-th largest chunk key (via kept_threshold over each invocation's
// m largest) has at least k candidate keys ≥ T (k distinct chunks each hold one), and only the
// chunks whose key reaches T can hold such a key: with ≥ CHUNKS_PER_K·k chunks about k of them
// do, so the second read covers a few percent of the layer and the first does a max per value
// where the lane filter does an insertion. Returns false, having written nothing, when it does
// not pay for this layer (few chunks, unaligned, k > 4·WG), when fewer than k chunks exist, or
// when more than MAX_C keys reach T (heavy ties): the caller then runs the lane filter.
fn try_chunked(mode: u32, t: u32, base: u32, o: u32, s: u32, k: u32, outBase: u32) -> bool {
  if (mode == MODE_AUX || k > 4u * WG) { return false; }
  if ((base + o) % 4u != 0u || s % 4u != 0u) { return false; }
  let n4 = s / 4u;
  let g0 = min(CHUNK_READS_MAX, n4 / (CHUNKS_PER_K * k));
  if (g0 < 2u) { return false; }
  // ≤ CHUNK_CAP chunks (WG divides CHUNK_CAP, so nb·WG ≤ CHUNK_CAP).
  let G = max(g0, (n4 + CHUNK_CAP - 1u) / CHUNK_CAP);
  let nb = (n4 + WG * G - 1u) / (WG * G);
  let q0 = (base + o) / 4u;
  let m = kept_per_lane(k);
  var top = Top5(0u, 0u, 0u, 0u, 0u);
  for (var b = 0u; b < nb; b++) {
    var cm = 0u;
    let qb = b * WG * G + t;
    for (var i = 0u; i < G; i++) {
      let q = qb + WG * i;
      if (q < n4) {
        let v = pre_vec(q0 + q);
        let i0 = o + 4u * q;
        var k4: vec4u;
        // (The layer's own offset decides whether features come four per parents texel.)
        if (mode == MODE_MAIN && o % 4u == 0u) {
          k4 = cand_key4_main(v, i0, o);
        } else {
          k4 = vec4u(cand_key(mode, v.x, i0, o), cand_key(mode, v.y, i0 + 1u, o),
            cand_key(mode, v.z, i0 + 2u, o), cand_key(mode, v.w, i0 + 3u, o));
        }
        cm = max(cm, max(max(k4.x, k4.y), max(k4.z, k4.w)));
      }
    }
    set_scratch(b * WG + t, cm);
    keep(&top, cm);
  }
  let T = kept_threshold(t, m, k, top);
  if (T == 0u) { return false; }
  // Each invocation lists its own chunks (written above by itself) that reach T.
  for (var b = 0u; b < nb; b++) {
    if (scratch_at(b * WG + t) >= T) {
      set_scratch(CHUNK_CAP + atomicAdd(&hitCount, 1u), b * WG + t);
    }
  }
  return collect_hit_chunks(mode, t, q0, o, n4, G, true, false, hit_chunks(t), T, k, outBase);
}

// The number of chunks the hit list was offered (hitCount, uniform over the workgroup), once every
// invocation has added its own.
fn hit_chunks(t: u32) -> u32 {
  workgroupBarrier();
  if (t == 0u) { wgU = atomicLoad(&hitCount); }
  return workgroupUniformLoad(&wgU);
}

// The chunk filters' second read: the per vec4s of each of the hit chunks listed from
// scratch[CHUNK_CAP] (H of them, ≤ CHUNK_CAP), spread over the invocations, collecting every
// key ≥ T; chunk c is vec4s q = (c / WG)·WG·per + c % WG + WG·i when strided (try_chunked's blocks),
// else per·c + i, of the layer starting at vec4 q0 (feature o). `rootParents` (main mode: every
// parent of the layer is the root, as in a tree's first layer) skips the parent gate, which would
// pass every feature after a parent lookup each (tree-4layer-l0-32's top-k on lavapipe, 1 024
// rows: 123–137 → 114–121 ms, bench/topk_probe.ts).
// Then places the candidates, or returns false, having written nothing, when more than MAX_C keys
// reach T.
fn collect_hit_chunks(
  mode: u32,
  t: u32,
  q0: u32,
  o: u32,
  n4: u32,
  per: u32,
  strided: bool,
  rootParents: bool,
  H: u32,
  T: u32,
  k: u32,
  outBase: u32,
) -> bool {
  for (var e = t; e < H * per; e += WG) {
    let c = scratch_at(CHUNK_CAP + e / per);
    let q = select(per * c + e % per, (c / WG) * WG * per + c % WG + WG * (e % per), strided);
    if (q < n4) {
      let v = pre_vec(q0 + q);
      let i0 = o + 4u * q;
      var k4 = vec4u(key_of(v.x), key_of(v.y), key_of(v.z), key_of(v.w));
      if (!rootParents) {
        k4 = vec4u(
          cand_key(mode, v.x, i0, o),
          cand_key(mode, v.y, i0 + 1u, o),
          cand_key(mode, v.z, i0 + 2u, o),
          cand_key(mode, v.w, i0 + 3u, o),
        );
      }
      // Most vec4s hold no key ≥ T: one test skips the four collects (and their masked atomics).
      if (any(k4 >= vec4u(T))) {
        collect(i0, k4.x, T);
        collect(i0 + 1u, k4.y, T);
        collect(i0 + 2u, k4.z, T);
        collect(i0 + 3u, k4.w, T);
      }
    }
  }
  let C = collected_count(t);
  if (C > MAX_C) { return false; }
  place_ordered(mode, t, C, k, outBase);
  return true;
}

// try_chunked with the chunk maxima the encoder GEMM wrote (CMAX_IN = 1) for the first layer
// [0, s), ungated (one layer: s = n) or gated with the root for every parent (the tree's first
// layer; s % 64 == 0), so a chunk key is key_of of its maximum: chunk c is features
// [64c, 64c + 64) of row r. The first read of pre is gone; the second reads the ~k hit chunks (16
// vec4s each). Same outcomes and fallbacks as try_chunked; it needs n % 4 == 0, s % 4 == 0 and at
// least k chunks.
fn try_cmax(t: u32, r: u32, s: u32, k: u32, outBase: u32) -> bool {
  let nc = (s + CMAX_COLS - 1u) / CMAX_COLS;
  if (k > 4u * WG || nc < k || u.n % 4u != 0u || s % 4u != 0u) { return false; }
  let cb = r * ((u.n + CMAX_COLS - 1u) / CMAX_COLS);
  var top = Top5(0u, 0u, 0u, 0u, 0u);
  for (var c = t; c < nc; c += WG) { keep(&top, key_of(cmaxIn[cb + c])); }
  let T = kept_threshold(t, kept_per_lane(k), k, top);
  if (T == 0u) { return false; }
  // The hit list holds CHUNK_CAP chunks (try_chunked never has more chunks than that).
  for (var c = t; c < nc; c += WG) {
    if (key_of(cmaxIn[cb + c]) >= T) {
      let h = atomicAdd(&hitCount, 1u);
      if (h < CHUNK_CAP) { set_scratch(CHUNK_CAP + h, c); }
    }
  }
  let H = hit_chunks(t);
  if (H > CHUNK_CAP) { return false; }
  return collect_hit_chunks(MODE_MAIN, t, r * (u.n / 4u), 0u, s / 4u, CMAX_COLS / 4u, false, true, H, T, k,
    outBase);
}

// Lane filter (threshold filter + exact rank): each invocation keeps the top m keys of its strided
// share of the layer (kept_per_lane); the k-th largest of those WG·m keys, T, has at least k
// candidate keys ≥ T (k distinct elements reach it), usually few more. One more read collects
// every key ≥ T (at most MAX_C) and they are placed in order. Returns false, having written
// nothing, when T does not exist (fewer than k candidates) or too many keys tie at/above it: the
// caller then runs the radix select. pre is read as vec4 when the layer is 4-aligned.
fn try_fast(mode: u32, t: u32, base: u32, o: u32, s: u32, k: u32, outBase: u32) -> bool {
  if (k > 4u * WG) { return false; }
  let m = kept_per_lane(k);
  var top = Top5(0u, 0u, 0u, 0u, 0u);
  let aligned = mode != MODE_AUX && (base + o) % 4u == 0u && s % 4u == 0u;
  let n4 = select(0u, s / 4u, aligned);
  // Two copies of the scan so the common m = 1 case runs a plain max (llvmpipe executes both sides
  // of a divergent branch; a loop under a false uniform branch exits at once).
  if (m == 1u) {
    for (var q = t; q < n4; q += WG) {
      let v = pre_vec((base + o) / 4u + q);
      for (var c = 0u; c < 4u; c++) { top.a = max(top.a, cand_key(mode, v[c], o + 4u * q + c, o)); }
    }
    for (var i = o + 4u * n4 + t; i < o + s; i += WG) {
      let f = feat(mode, i, o);
      top.a = max(top.a, cand_key(mode, pre_at(base + f), f, o));
    }
  } else {
    for (var q = t; q < n4; q += WG) {
      let v = pre_vec((base + o) / 4u + q);
      for (var c = 0u; c < 4u; c++) { keep(&top, cand_key(mode, v[c], o + 4u * q + c, o)); }
    }
    for (var i = o + 4u * n4 + t; i < o + s; i += WG) {
      let f = feat(mode, i, o);
      keep(&top, cand_key(mode, pre_at(base + f), f, o));
    }
  }
  let T = kept_threshold(t, m, k, top);
  if (T == 0u) { return false; }
  // Hits are rare: each lane first skips (loads and compares only) to its next vec4 holding a key
  // ≥ T, so the masked atomics and stores run once per hit instead of once per element.
  var q = t;
  loop {
    loop {
      if (q >= n4) { break; }
      let v = pre_vec((base + o) / 4u + q);
      let i0 = o + 4u * q;
      let hit = cand_key(mode, v.x, i0, o) >= T || cand_key(mode, v.y, i0 + 1u, o) >= T ||
        cand_key(mode, v.z, i0 + 2u, o) >= T || cand_key(mode, v.w, i0 + 3u, o) >= T;
      if (hit) { break; }
      q += WG;
    }
    if (q >= n4) { break; }
    let v = pre_vec((base + o) / 4u + q);
    for (var c = 0u; c < 4u; c++) {
      let i = o + 4u * q + c;
      collect(i, cand_key(mode, v[c], i, o), T);
    }
    q += WG;
  }
  for (var i = o + 4u * n4 + t; i < o + s; i += WG) {
    let f = feat(mode, i, o);
    collect(f, cand_key(mode, pre_at(base + f), f, o), T);
  }
  let C = collected_count(t);
  if (C > MAX_C) { return false; }
  place_ordered(mode, t, C, k, outBase);
  return true;
}

// Write the first min(k, count) candidates [0, count) in order (key descending, index
// ascending) to slots outBase.., and mark slots [count, k) unused. Up to RANK_MAX candidates: each finds its
// rank against all others (no barriers); many: bitonic sort. count must be uniform.
fn place_ordered(mode: u32, t: u32, count: u32, k: u32, outBase: u32) {
  if (count <= RANK_MAX) {
    // Each invocation ranks the four candidates of one vec4 at a time, so every workgroup load
    // serves four of them.
    for (var c4 = t; 4u * c4 < count; c4 += WG) {
      let ki = candKey4[c4];
      let ii = candIdx4[c4];
      var rank = vec4u(0u);
      for (var q4 = 0u; 4u * q4 < count; q4++) {
        let kv = candKey4[q4];
        let iv = candIdx4[q4];
        let q = 4u * q4;
        rank += before4(q, count, kv.x, iv.x, ki, ii) + before4(q + 1u, count, kv.y, iv.y, ki, ii) +
          before4(q + 2u, count, kv.z, iv.z, ki, ii) + before4(q + 3u, count, kv.w, iv.w, ki, ii);
      }
      let c = 4u * c4;
      let ok = (vec4u(c) + vec4u(0u, 1u, 2u, 3u) < vec4u(count)) & (rank < vec4u(k));
      if (ok.x) { place(mode, outBase + rank.x, ii.x, max(value_of(ki.x), 0.0)); }
      if (ok.y) { place(mode, outBase + rank.y, ii.y, max(value_of(ki.y), 0.0)); }
      if (ok.z) { place(mode, outBase + rank.z, ii.z, max(value_of(ki.z), 0.0)); }
      if (ok.w) { place(mode, outBase + rank.w, ii.w, max(value_of(ki.w), 0.0)); }
    }
  } else {
    sort_candidates(t, count);
    for (var c = t; c < min(k, count); c += WG) {
      place(mode, outBase + c, cand_idx_at(c), max(value_of(cand_key_at(c)), 0.0));
    }
  }
  for (var c = count + t; c < k; c += WG) {
    if (mode == MODE_AUX) {
      auxIdx[outBase + c] = NO_SLOT;
      auxVal[outBase + c] = 0.0;
    } else {
      idx[outBase + c] = NO_SLOT;
      val[outBase + c] = 0.0;
    }
  }
  workgroupBarrier();
}

// Sort the candidates [0, count) by key descending, index ascending (a bitonic network over the
// next power of two, padded with key 0 — below every candidate's key). count must be uniform.
// O(P log² P) instead of the O(count²) of ranking every candidate against every other.
fn sort_candidates(t: u32, count: u32) {
  var P = 1u;
  while (P < count) { P = P * 2u; }
  for (var e = count + t; e < P; e += WG) {
    set_cand(e, NO_SLOT, 0u);
  }
  workgroupBarrier();
  for (var size = 2u; size <= P; size = size * 2u) {
    for (var stride = size / 2u; stride > 0u; stride = stride / 2u) {
      for (var e = t; e < P / 2u; e += WG) {
        let i = 2u * stride * (e / stride) + e % stride;
        let j = i + stride;
        let ki = cand_key_at(i);
        let kj = cand_key_at(j);
        let ii = cand_idx_at(i);
        let ij = cand_idx_at(j);
        let jFirst = kj > ki || (kj == ki && ij < ii);
        let descending = (i & size) == 0u;
        if (jFirst == descending) {
          set_cand(i, ij, kj);
          set_cand(j, ii, ki);
        }
      }
      workgroupBarrier();
    }
  }
}

// Write one winner into the main or aux slots (main: remember that it fired).
fn place(mode: u32, slot: u32, i: u32, v: f32) {
  if (mode == MODE_AUX) {
    auxIdx[slot] = i;
    auxVal[slot] = v;
  } else {
    idx[slot] = i;
    val[slot] = v;
    if (mode == MODE_MAIN && v >= FIRE_THRESHOLD) { mark_fired(i); }
  }
}

// Radix select of the k-th largest key among the layer's candidates (4 passes of 8 bits over
// the order-preserving keys, workgroup histogram, stopping early when a bin holds exactly the
// remaining count). Writes st: [0] T, [1] ties at T to take (unless [2]), [2] 1 = take every key
// ≥ T, [3] keys to take, kk = min(k, candidates).
fn radix_threshold(mode: u32, t: u32, base: u32, o: u32, s: u32, k: u32) {
  var prefix = 0u;
  var mask = 0u;
  for (var pass_ = 0u; pass_ < 4u; pass_++) {
    let shift = 24u - 8u * pass_;
    for (var b = t; b < 256u; b += WG) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    for (var i = o + t; i < o + s; i += WG) {
      let c = candidate(mode, base, feat(mode, i, o), o);
      if (c.x != 0u && (c.y & mask) == prefix) { atomicAdd(&hist[(c.y >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    if (t == 0u) {
      var remaining = st[1];
      if (pass_ == 0u) {
        var total = 0u;
        for (var b = 0u; b < 256u; b++) { total += atomicLoad(&hist[b]); }
        remaining = min(k, total);
        st[3] = remaining;
      }
      var done = 0u;
      if (remaining == 0u) {
        done = 1u;
        st[2] = 1u;
        st[0] = 0xffffffffu;
      } else {
        var b = 255u;
        loop {
          let h = atomicLoad(&hist[b]);
          if (h >= remaining || b == 0u) {
            prefix = prefix | (b << shift);
            if (h == remaining) {
              done = 1u;
              st[2] = 1u;
              st[0] = prefix;
            } else if (pass_ == 3u) {
              st[2] = 0u;
              st[0] = prefix;
            }
            break;
          }
          remaining -= h;
          b -= 1u;
        }
      }
      st[1] = remaining;
      st[4] = prefix;
      stDone = done;
    }
    let isDone = workgroupUniformLoad(&stDone);
    prefix = st[4];
    mask = mask | (255u << shift);
    if (isDone != 0u) { break; }
  }
}

// Invocation t's exclusive prefix of x over the workgroup in invocation order (a serial pass by
// invocation 0 through eqScan); the total is left in wgU. All invocations must call it.
fn exclusive_prefix(t: u32, x: u32) -> u32 {
  eqScan[t] = x;
  workgroupBarrier();
  if (t == 0u) {
    var run = 0u;
    for (var j = 0u; j < WG; j++) {
      let e = eqScan[j];
      eqScan[j] = run;
      run += e;
    }
    wgU = run;
  }
  workgroupBarrier();
  return eqScan[t];
}

// The sum over the workgroup of every invocation's x (uniform): a tree of log2(WG) steps (one
// invocation summing all WG entries made every bisection step a serial chain on GPUs).
fn wg_total(t: u32, x: u32) -> u32 {
  eqScan[t] = x;
  for (var off = WG / 2u; off > 0u; off /= 2u) {
    workgroupBarrier();
    if (t < off) { eqScan[t] += eqScan[t + off]; }
  }
  return workgroupUniformLoad(&eqScan[0]);
}

// Where select_aux_layer reads the AuxK keys of positions [0, len): pre (through the dead list),
// the scratch (position i's key at i, 0 = not a candidate), or the candidate list in ascending
// position order (key candKey[i] of position candIdx[i]).
const AUX_PRE: u32 = 0u;
const AUX_SCRATCH: u32 = 1u;
const AUX_LIST: u32 = 2u;
const AUX_PRIV: u32 = 3u;
// 1 = (software adapters) a row's keys of at most SCRATCH (and 4·WG·PRIV_Q) dead features are held
// in private memory, each invocation its contiguous chunk of vec4s (AUX_PRIV), instead of the
// workgroup scratch: llvmpipe loads a private array at a uniform index as whole vectors, where a
// workgroup load loops over the lanes (1 229 dead of 24 576, kAux 256: 160 → 70 ms per 1 024 rows).
override AUX_PRIVATE: bool = false;
const PRIV_Q: u32 = 48u;
var<private> pkeys: array<vec4u, PRIV_Q>;
// The invocation's first vec4 of the keys and how many it holds.
var<private> pQ0: u32;
var<private> pN: u32;

// The keys of entries 4q..4q+3 of a source (0 past len).
fn aux_keys4(src: u32, base: u32, o: u32, len: u32, q: u32) -> vec4u {
  if (src == AUX_SCRATCH) { return scratch[q]; }
  if (src == AUX_LIST) {
    let i = vec4u(4u * q) + vec4u(0u, 1u, 2u, 3u);
    return select(vec4u(0u), candKey4[q], i < vec4u(len));
  }
  var v = vec4u(0u);
  for (var c = 0u; c < 4u; c++) {
    let i = 4u * q + c;
    if (i < len) { v[c] = aux_key(src, base, o, i); }
  }
  return v;
}

// The keys of vec4 q0 + j of a source, where q0 is the invocation's first (AUX_PRIV: pQ0): from
// private memory at the uniform index j.
fn own_keys4(src: u32, base: u32, o: u32, len: u32, q0: u32, j: u32) -> vec4u {
  if (src == AUX_PRIV) { return pkeys[j]; }
  return aux_keys4(src, base, o, len, q0 + j);
}

// The key of entry i of a source.
fn aux_key(src: u32, base: u32, o: u32, i: u32) -> u32 {
  if (src == AUX_SCRATCH) { return scratch_at(i); }
  if (src == AUX_LIST) { return cand_key_at(i); }
  let c = candidate(MODE_AUX, base, feat(MODE_AUX, o + i, o), o);
  return select(0u, c.y, c.x != 0u);
}

// Entries [0, len) of the scratch or the list with a key at or above x, over the workgroup.
fn count_ge(t: u32, src: u32, len: u32, x: u32) -> u32 {
  var c = 0u;
  if (src == AUX_PRIV) {
    for (var j = 0u; j < pN; j++) {
      let s4 = select(vec4u(0u), vec4u(1u), pkeys[j] >= vec4u(x));
      c += s4.x + s4.y + s4.z + s4.w;
    }
    return wg_total(t, c);
  }
  for (var q = t; 4u * q < len; q += WG) {
    let s4 = select(vec4u(0u), vec4u(1u), aux_keys4(src, 0u, 0u, len, q) >= vec4u(x));
    c += s4.x + s4.y + s4.z + s4.w;
  }
  return wg_total(t, c);
}

// The radix select's result (st as there) over the scratch or the list, by bisection over the
// key space: each step one comparison per key and a workgroup sum, no atomics (llvmpipe runs a
// workgroup atomic as a loop over the lanes); it stops as soon as exactly kk keys reach the probe.
fn bisect_threshold(t: u32, src: u32, len: u32, k: u32, total: u32) {
  let kk = min(k, total);
  var lo = 1u;
  var hi = 0xffffffffu;
  var exact = kk == 0u;
  if (exact) { lo = 0xffffffffu; }
  loop {
    if (exact || lo >= hi) { break; }
    let mid = lo + (hi - lo) / 2u + 1u;
    let c = count_ge(t, src, len, mid);
    if (c >= kk) {
      lo = mid;
      exact = c == kk;
    } else {
      hi = mid - 1u;
    }
  }
  // count(≥ lo) ≥ kk; unless exact, count(≥ lo + 1) < kk and the rest are ties at lo.
  var gt = 0u;
  if (!exact && lo < 0xffffffffu) { gt = count_ge(t, src, len, lo + 1u); }
  if (t == 0u) {
    st[0] = lo;
    st[1] = kk - gt;
    st[2] = select(0u, 1u, exact);
    st[3] = kk;
  }
  workgroupBarrier();
}

// Many dead features: the keys at or above a lower bound T0 of the k-th largest (the lane
// filter's first pass, k ≤ 4·WG) listed in ascending position order into the candidate arrays
// (contiguous chunks per invocation: count, prefix, write). Returns their number, or 0xffffffff
// (having listed nothing) when T0 does not exist or more than MAX_C keys reach it.
fn list_aux_candidates(t: u32, base: u32, o: u32, s: u32, k: u32) -> u32 {
  if (k > 4u * WG) { return 0xffffffffu; }
  var top = Top5(0u, 0u, 0u, 0u, 0u);
  for (var i = t; i < s; i += WG) { keep(&top, aux_key(AUX_PRE, base, o, i)); }
  let T0 = kept_threshold(t, kept_per_lane(k), k, top);
  if (T0 == 0u) { return 0xffffffffu; }
  let chunk = (s + WG - 1u) / WG;
  let c0 = min(s, t * chunk);
  let c1 = min(s, (t + 1u) * chunk);
  var hits = 0u;
  for (var i = c0; i < c1; i++) { hits += select(0u, 1u, aux_key(AUX_PRE, base, o, i) >= T0); }
  var p = exclusive_prefix(t, hits);
  let C = workgroupUniformLoad(&wgU);
  if (C > MAX_C) { return 0xffffffffu; }
  for (var i = c0; i < c1; i++) {
    let key = aux_key(AUX_PRE, base, o, i);
    if (key >= T0) {
      set_cand(p, i, key);
      p++;
    }
  }
  workgroupBarrier();
  return C;
}

// Write the AuxK key at position i (the dead feature it stands for, its value) into slot; the next slot.
fn put_aux(src: u32, outBase: u32, slot: u32, o: u32, i: u32, key: u32) -> u32 {
  let pos = select(i, cand_idx_at(i), src == AUX_LIST);
  auxIdx[outBase + slot] = feat(MODE_AUX, o + pos, o);
  auxVal[outBase + slot] = max(value_of(key), 0.0);
  return slot + 1u;
}

// AuxK: the top k candidates of the layer's dead features, written in ascending feature order
// (the order of their positions; lib/sae/reference selectAux uses it too, so the decode sums in
// the order of the dense AuxK product), the rest of the k slots unused. Up to SCRATCH positions
// the keys are read once into the scratch; more are narrowed to an ordered list by the lane
// filter's bound; either way the threshold is found by bisection. Failing both (k > 4·WG, heavy
// ties), the radix select reads pre in every pass.
fn select_aux_layer(t: u32, base: u32, o: u32, s: u32, k: u32, outBase: u32) {
  var src = AUX_PRE;
  var len = s;
  if (AUX_PRIVATE && s <= SCRATCH && s <= 4u * WG * PRIV_Q) {
    let s4 = (s + 3u) / 4u;
    let chunk = (s4 + WG - 1u) / WG;
    pQ0 = min(s4, t * chunk);
    pN = min(s4, pQ0 + chunk) - pQ0;
    var nz = 0u;
    for (var j = 0u; j < pN; j++) {
      let key = aux_keys4(AUX_PRE, base, o, s, pQ0 + j);
      pkeys[j] = key;
      let n4 = select(vec4u(0u), vec4u(1u), key != vec4u(0u));
      nz += n4.x + n4.y + n4.z + n4.w;
    }
    src = AUX_PRIV;
    bisect_threshold(t, src, len, k, wg_total(t, nz));
  } else if (s <= SCRATCH) {
    var nz = 0u;
    for (var q = t; 4u * q < s; q += WG) {
      let key = aux_keys4(AUX_PRE, base, o, s, q);
      scratch[q] = key;
      let s4 = select(vec4u(0u), vec4u(1u), key != vec4u(0u));
      nz += s4.x + s4.y + s4.z + s4.w;
    }
    src = AUX_SCRATCH;
    bisect_threshold(t, src, len, k, wg_total(t, nz));
  } else {
    let C = list_aux_candidates(t, base, o, s, k);
    if (C != 0xffffffffu) {
      src = AUX_LIST;
      len = C;
      bisect_threshold(t, src, len, k, C);
    } else {
      radix_threshold(MODE_AUX, t, base, o, s, k);
    }
  }
  let T = st[0];
  let takeAllGE = st[2] != 0u;
  let needEq = select(st[1], 0u, takeAllGE);
  let kk = st[3];
  // Contiguous chunks of whole vec4s per invocation: count what each takes (ties at T in position
  // order), then write the winners in order from the exclusive prefix of the counts.
  let len4 = (len + 3u) / 4u;
  let chunk = (len4 + WG - 1u) / WG;
  let q0 = min(len4, t * chunk);
  let q1 = min(len4, (t + 1u) * chunk);
  var gt = 0u;
  var eq = 0u;
  // Keys above T are taken outright, and those at T too when takeAllGE; other ties at T (never
  // key 0: not a candidate) are counted.
  let Tv = vec4u(T);
  for (var j = 0u; j < q1 - q0; j++) {
    let v = own_keys4(src, base, o, len, q0, j);
    let g4 = select(vec4u(0u), vec4u(1u), (v > Tv) | ((v == Tv) & vec4<bool>(takeAllGE)));
    let e4 = select(vec4u(0u), vec4u(1u), (v == Tv) & (v != vec4u(0u)) & vec4<bool>(!takeAllGE));
    gt += g4.x + g4.y + g4.z + g4.w;
    eq += e4.x + e4.y + e4.z + e4.w;
  }
  eqScan[t] = eq;
  takeScan[t] = gt;
  workgroupBarrier();
  if (t == 0u) {
    var eqRun = 0u;
    var slotRun = 0u;
    for (var j = 0u; j < WG; j++) {
      let e = eqScan[j];
      let g = takeScan[j];
      eqScan[j] = eqRun;
      takeScan[j] = slotRun;
      slotRun += g + min(e, needEq - min(needEq, eqRun));
      eqRun += e;
    }
  }
  workgroupBarrier();
  var eqBefore = eqScan[t];
  var slot = takeScan[t];
  // Whole vec4s: the taken lanes of each by mask (keys past len are 0, never taken), ties at T
  // given out in position order while any remain; each taken key written by its own lane of the
  // mask (per-element scalar extraction was ~45 % of the selection on llvmpipe).
  for (var j = 0u; j < q1 - q0; j++) {
    let v = own_keys4(src, base, o, len, q0, j);
    var take4 = (v > Tv) | ((v == Tv) & vec4<bool>(takeAllGE));
    let tie4 = (v == Tv) & (v != vec4u(0u)) & vec4<bool>(!takeAllGE);
    if (any(tie4) && eqBefore < needEq) {
      for (var c = 0u; c < 4u; c++) {
        if (tie4[c] && eqBefore < needEq) {
          take4[c] = true;
          eqBefore++;
        }
      }
    }
    if (any(take4)) {
      let i = 4u * (q0 + j);
      if (take4.x) { slot = put_aux(src, outBase, slot, o, i, v.x); }
      if (take4.y) { slot = put_aux(src, outBase, slot, o, i + 1u, v.y); }
      if (take4.z) { slot = put_aux(src, outBase, slot, o, i + 2u, v.z); }
      if (take4.w) { slot = put_aux(src, outBase, slot, o, i + 3u, v.w); }
    }
  }
  for (var c = kk + t; c < k; c += WG) {
    auxIdx[outBase + c] = NO_SLOT;
    auxVal[outBase + c] = 0.0;
  }
  workgroupBarrier();
}

// Select the top k of layer (o, s) on chunk row `r`, writing slots [slot0, slot0 + k) of `outRow`
// in either the main or the aux slot arrays. All invocations must call it (it has barriers).
fn select_layer(mode: u32, t: u32, r: u32, o: u32, s: u32, k: u32, outBase: u32) {
  let base = r * u.n;
  if (mode == MODE_AUX) {
    select_aux_layer(t, base, o, s, k, outBase);
    return;
  }
  if (s <= SMALL_MAX) {
    // At most SMALL_MAX candidates: collect them all and place them by pairwise ranks (two
    // barriers, against the radix select's eight per pass; small layers and dead lists were
    // dominated by those barriers on llvmpipe).
    if (t == 0u) { atomicStore(&candCount, 0u); }
    workgroupBarrier();
    for (var i = o + t; i < o + s; i += WG) {
      let f = feat(mode, i, o);
      let c = candidate(mode, base, f, o);
      if (c.x != 0u) {
        let p = atomicAdd(&candCount, 1u);
        set_cand(p, f, c.y);
      }
    }
    workgroupBarrier();
    if (t == 0u) { wgU = atomicLoad(&candCount); }
    place_ordered(mode, t, workgroupUniformLoad(&wgU), k, outBase);
    return;
  }
  if (try_chunked(mode, t, base, o, s, k, outBase)) { return; }
  if (try_fast(mode, t, base, o, s, k, outBase)) { return; }
  radix_threshold(mode, t, base, o, s, k);
  let T = st[0];
  let takeAllGE = st[2] != 0u;
  let needEq = select(st[1], 0u, takeAllGE);
  let kk = st[3];
  // Collect: contiguous chunks so ties at T are taken in index order.
  let chunk = (s + WG - 1u) / WG;
  let c0 = o + min(s, t * chunk);
  let c1 = o + min(s, (t + 1u) * chunk);
  var eq = 0u;
  if (!takeAllGE) {
    for (var i = c0; i < c1; i++) {
      let c = candidate(mode, base, feat(mode, i, o), o);
      if (c.x != 0u && c.y == T) { eq++; }
    }
  }
  if (t == 0u) { atomicStore(&candCount, 0u); }
  var eqBefore = exclusive_prefix(t, eq);
  for (var i = c0; i < c1; i++) {
    let c = candidate(mode, base, feat(mode, i, o), o);
    if (c.x == 0u) { continue; }
    var take = false;
    if (takeAllGE) {
      take = c.y >= T;
    } else if (c.y > T) {
      take = true;
    } else if (c.y == T && eqBefore < needEq) {
      take = true;
      eqBefore++;
    }
    if (take && kk > 0u) {
      let p = atomicAdd(&candCount, 1u);
      if (p < MAX_C) {
        set_cand(p, feat(mode, i, o), c.y);
      }
    }
  }
  workgroupBarrier();
  // Place the winners in order: value descending, index ascending.
  if (t == 0u) { wgU = kk; }
  let count = workgroupUniformLoad(&wgU);
  place_ordered(mode, t, count, k, outBase);
}

// 1 = select_topk reads the tree's children by parent at binding 6 (gated layouts; see
// childLists in lib/sae/ops/topk.ts): [n + 1] start of each parent value's run, then the n
// features ordered by parent, ascending within a run. A gated layer after the first whose row has
// at most CHILD_MAX eligible features (children of the layer's root or of a feature an earlier
// layer fired) is then selected from those alone, plus its first k ineligible features (score 0;
// the rest of its zeros rank after them, ties going to the lower index), instead of by a pass
// over the whole layer: the cost follows the fired parents' children, not the layer's size.
override CHILD_LISTS: u32 = 0u;
// Most eligible features of a row that the child-list path takes; beyond, the pass over the layer
// (lavapipe, 1 024 rows: [6 144, 18 432] at k [69, 11], ~210 eligible, 330 ms against 492–509 for
// the pass; ~315 eligible, as fast as the pass). With k ≤ MAX_K, at most RANK_MAX candidates.
const CHILD_MAX: u32 = 256u;

// Positions [lo, hi) in binding 6's list of the children of parent value p that lie in [o, o + s).
fn child_run(p: u32, o: u32, s: u32) -> vec2u {
  let list = u.n + 1u;
  var a = extra[p];
  var b = extra[p + 1u];
  let end = b;
  loop {
    if (a >= b) { break; }
    let m = (a + b) / 2u;
    if (extra[list + m] < o) { a = m + 1u; } else { b = m; }
  }
  let lo = a;
  b = end;
  loop {
    if (a >= b) { break; }
    let m = (a + b) / 2u;
    if (extra[list + m] < o + s) { a = m + 1u; } else { b = m; }
  }
  return vec2u(lo, a);
}

// The children in layer (o, s) of slot q's feature if it fired (slots [rowBase, outBase) hold the
// row's earlier layers), or of the layer's root for q == outBase.
fn fired_run(q: u32, o: u32, s: u32, outBase: u32) -> vec2u {
  if (q == outBase) { return child_run(o, o, s); }
  if (val[q] >= FIRE_THRESHOLD) { return child_run(idx[q], o, s); }
  return vec2u(0u);
}

// The child-list selection of a gated layer (see CHILD_LISTS); false, with nothing written, when
// the row has more than CHILD_MAX eligible features there. All invocations must call it.
fn select_children(t: u32, r: u32, o: u32, s: u32, k: u32, rowBase: u32, outBase: u32) -> bool {
  // The earlier layers' slots, written by other invocations' place(), are read below.
  storageBarrier();
  var mine = 0u;
  for (var q = rowBase + t; q <= outBase; q += WG) {
    let run = fired_run(q, o, s, outBase);
    mine += run.y - run.x;
  }
  // Each invocation's first candidate position.
  var pos = exclusive_prefix(t, mine);
  let eligibleCount = workgroupUniformLoad(&wgU);
  if (eligibleCount > CHILD_MAX) { return false; }
  let base = r * u.n;
  for (var q = rowBase + t; q <= outBase; q += WG) {
    let run = fired_run(q, o, s, outBase);
    for (var c = run.x; c < run.y; c++) {
      let f = extra[u.n + 1u + c];
      set_cand(pos, f, key_of(pre_at(base + f)));
      pos++;
    }
  }
  workgroupBarrier();
  if (t == 0u) {
    // The first ineligible features in index order: every other one ties with them at score 0
    // and loses on its index.
    let want = eligibleCount + min(k, s - eligibleCount);
    var pos = eligibleCount;
    for (var i = o; i < o + s && pos < want; i++) {
      if (!eligible(i, o)) {
        set_cand(pos, i, key_of(0.0));
        pos++;
      }
    }
    wgU = pos;
  }
  place_ordered(MODE_MAIN, t, workgroupUniformLoad(&wgU), k, outBase);
  return true;
}

fn clear_fired(t: u32) {
  for (var w = t; w < FIRE_WORDS; w += WG) { atomicStore(&fired[w], 0u); }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn select_topk(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let r = w.y * u.row_stride + w.x;
  if (r >= u.rows) { return; }
  let t = l.x;
  clear_fired(t);
  let rowBase = (u.rowOffset + r) * u.K;
  var first = 0u;
  if (CMAX_IN == 1u) {
    let lay = layers[0];
    if (lay.y >= SMALL_MAX && try_cmax(t, r, lay.y, lay.z, rowBase + lay.w)) { first = 1u; }
  }
  for (var layer = first; layer < u.L; layer++) {
    let lay = layers[layer];
    // The first layer's parents are all the root: every feature is eligible there.
    if (CHILD_LISTS == 1u && GATED != 0u && layer > 0u) {
      if (select_children(t, r, lay.x, lay.y, lay.z, rowBase, rowBase + lay.w)) { continue; }
    }
    select_layer(MODE_MAIN, t, r, lay.x, lay.y, lay.z, rowBase + lay.w);
  }
}

@compute @workgroup_size(WG)
fn select_aux(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  // Bound like select_topk's (binding 11 follows it): a static use, never read.
  _ = &cmaxIn;
  let r = w.y * u.row_stride + w.x;
  if (r >= u.rows) { return; }
  let t = l.x;
  clear_fired(t);
  let row = u.rowOffset + r;
  if (GATED != 0u) {
    for (var s = t; s < u.K; s += WG) {
      if (val[row * u.K + s] >= FIRE_THRESHOLD) { mark_fired(idx[row * u.K + s]); }
    }
  }
  // The layer's dead features: the part of the ascending dead list inside [o, o + s).
  let lay = layers[u.auxLayer];
  if (t == 0u) {
    let total = extra[0];
    var lo = 0u;
    var hi = total;
    loop {
      if (lo >= hi) { break; }
      let mid = (lo + hi) / 2u;
      if (extra[1u + mid] < lay.x) { lo = mid + 1u; } else { hi = mid; }
    }
    var end = lo;
    hi = total;
    loop {
      if (end >= hi) { break; }
      let mid = (end + hi) / 2u;
      if (extra[1u + mid] < lay.x + lay.y) { end = mid + 1u; } else { hi = mid; }
    }
    st[5] = lo;
    wgU = end - lo;
  }
  let count = workgroupUniformLoad(&wgU);
  listLo = st[5];
  select_layer(MODE_AUX, t, r, lay.x, count, u.kAux, row * u.kAux);
}

@compute @workgroup_size(WG)
fn select_batch(@builtin(workgroup_id) w: vec3u, @builtin(local_invocation_id) l: vec3u) {
  _ = &cmaxIn; // as in select_aux
  let r = w.y * u.row_stride + w.x;
  if (r >= u.rows) { return; }
  let row = u.rowOffset + r;
  // extra = batch info from kernels/batch_topk.wgsl: [0] threshold key, [1 + row] slots this row keeps.
  for (var c = l.x; c < u.K; c += WG) {
    idx[row * u.K + c] = NO_SLOT;
    val[row * u.K + c] = 0.0;
  }
  workgroupBarrier();
  batchT = extra[0];
  let lay = layers[0];
  select_layer(MODE_BATCH, l.x, r, lay.x, lay.y, extra[1u + row], row * u.K);
}
