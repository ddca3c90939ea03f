// lm_matmul: out[M, N] = a[M, K] @ W + bias[N] for the GPT-2 forward (lib/lm/kernels.ts).
//
// W layout is chosen by the override TRANS_B:
//   TRANS_B = false: W is b[K, N] row-major, Hugging Face's Conv1D layout ([in, out]), used by
//                    c_attn, c_proj, c_fc.
//   TRANS_B = true:  W is b[N, K] row-major, i.e. out = a @ bᵀ, used by the tied unembedding
//                    (logits = h @ wteᵀ, with wte [vocab, d]).
// HAS_BIAS = false skips the bias (binding 2 must still be bound to some buffer).
//
// Bindings: 0 a    array<f32> [M, K]
//           1 b    array<f32> [K, N] or [N, K]
//           2 bias array<f32> [N]
//           3 out  array<f32> [M, N]
//           4 u    Params     M, N, K, b_off (element offset of W inside b: a vocabulary
//                             sub-range of a token-table chunk for the unembedding)
// One invocation computes a TM×TN (4×4) block of out, reading a and b straight from storage
// (register tiling: on llvmpipe this beats shared-memory tiling, see DESIGN §2). Edge blocks clamp
// their reads and skip out-of-range writes, so any M, N, K works.
// Grid: x = ceil(N / (TN·WG_X)), y = ceil(M / (TM·WG_Y)).

override WG_X: u32 = 8;
override WG_Y: u32 = 8;
override TRANS_B: bool = false;
override HAS_BIAS: bool = true;

const TM: u32 = 4u;
const TN: u32 = 4u;

struct Params { M: u32, N: u32, K: u32, b_off: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> u: Params;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let n0 = g.x * TN;
  let m0 = g.y * TM;
  if (n0 >= u.N || m0 >= u.M) { return; }
  var rows: array<u32, 4>;
  var cols: array<u32, 4>;
  for (var i = 0u; i < TM; i++) { rows[i] = min(m0 + i, u.M - 1u) * u.K; }
  for (var j = 0u; j < TN; j++) { cols[j] = min(n0 + j, u.N - 1u); }
  var acc: array<vec4f, 4>;
  for (var k = 0u; k < u.K; k++) {
    var bv: vec4f;
    if (TRANS_B) {
      let o = u.b_off + k;
      bv = vec4f(b[cols[0] * u.K + o], b[cols[1] * u.K + o], b[cols[2] * u.K + o], b[cols[3] * u.K + o]);
    } else {
      let r = u.b_off + k * u.N;
      bv = vec4f(b[r + cols[0]], b[r + cols[1]], b[r + cols[2]], b[r + cols[3]]);
    }
    for (var i = 0u; i < TM; i++) {
      acc[i] += a[rows[i] + k] * bv;
    }
  }
  var bb = vec4f(0.0);
  if (HAS_BIAS) { bb = vec4f(bias[cols[0]], bias[cols[1]], bias[cols[2]], bias[cols[3]]); }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + i;
    if (m >= u.M) { break; }
    let v = acc[i] + bb;
    for (var j = 0u; j < TN; j++) {
      if (n0 + j < u.N) { out[m * u.N + n0 + j] = v[j]; }
    }
  }
}
