// unpack_f16: widen packed f16 values to f32 (the activation store's f16 shards).
//
// Bindings: 0 src  array<u32>  [ceil(n/2)]  two f16 per word, little-endian (low half first)
//           1 dst  array<f32>  [n]
//           2 u    Params      n = number of f16 values
// One invocation converts one u32 word (two values); the last word of an odd n
// writes only its low half. Grid: ceil(ceil(n/2) / WG) workgroups in x, wrapped
// into y when that exceeds the per-dimension limit (row = WG * 65535 words).

override WG: u32 = 256;

struct Params { n: u32, row_words: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> u: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let w = g.y * u.row_words + g.x;
  let i = 2u * w;
  if (i >= u.n) { return; }
  let v = unpack2x16float(src[w]);
  dst[i] = v.x;
  if (i + 1u < u.n) { dst[i + 1u] = v.y; }
}
