// lm_attention: causal multi-head self-attention of GPT-2, from the fused qkv projection.
//
// Bindings: 0 qkv array<f32> [rows, 3·d]  per row: q (d) | k (d) | v (d); head h uses columns
//                                          h·hd .. h·hd+hd-1 of each part
//           1 out array<f32> [rows, d]    per row: the heads' outputs side by side (before c_proj)
//           2 u   Params     rows, seq, n_head, hd, scale (f32, = 1/sqrt(hd)), row_stride
// Rows are sequences of `seq` tokens laid end to end: row n is position n % seq of sequence
// n / seq, and attends to positions 0..n % seq of its own sequence.
// One invocation computes one (row, head): a single pass over the keys with an online softmax
// (running max m and normaliser l; the accumulator is rescaled when m grows), so the scores are
// never stored. hd ≤ MAX_HD. Grid: ceil(rows·n_head / WG) workgroups, wrapped into y
// (index = y·row_stride + global x).

override WG: u32 = 64;
const MAX_HD: u32 = 128u;

struct Params { rows: u32, seq: u32, n_head: u32, hd: u32, scale: f32, row_stride: u32 }

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> u: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * u.row_stride + g.x;
  if (i >= u.rows * u.n_head) { return; }
  let n = i / u.n_head;
  let h = i % u.n_head;
  let d = u.n_head * u.hd;
  let t = n % u.seq;
  let first = n - t;
  var q: array<f32, MAX_HD>;
  var acc: array<f32, MAX_HD>;
  let qoff = n * 3u * d + h * u.hd;
  for (var c = 0u; c < u.hd; c++) { q[c] = qkv[qoff + c] * u.scale; acc[c] = 0.0; }
  var m = -3.0e38;
  var l = 0.0;
  for (var j = first; j <= n; j++) {
    let koff = j * 3u * d + d + h * u.hd;
    var s = 0.0;
    for (var c = 0u; c < u.hd; c++) { s += q[c] * qkv[koff + c]; }
    let m_new = max(m, s);
    let corr = exp(m - m_new);
    let p = exp(s - m_new);
    l = l * corr + p;
    let voff = koff + d;
    for (var c = 0u; c < u.hd; c++) { acc[c] = acc[c] * corr + p * qkv[voff + c]; }
    m = m_new;
  }
  let ooff = n * d + h * u.hd;
  for (var c = 0u; c < u.hd; c++) { out[ooff + c] = acc[c] / l; }
}
