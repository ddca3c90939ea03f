// lm_embedding: x[n, :] = wte[tok[n], :] + wpe[pos[n], :] (GPT-2 token + position embeddings).
//
// The token table may be split into vocabulary chunks (one buffer each, so tables larger than
// maxStorageBufferBindingSize work); the kernel runs once per chunk and writes only the rows whose
// token lies in [vocab_start, vocab_start + vocab_count). Every token lies in exactly one chunk,
// so every row is written exactly once over all chunks.
//
// Bindings: 0 tok  array<u32> [rows]           token ids
//           1 pos  array<u32> [rows]           positions (< n_positions)
//           2 wte  array<f32> [vocab_count, d] this chunk of the token table
//           3 wpe  array<f32> [n_positions, d]
//           4 x    array<f32> [rows, d]
//           5 u    Params     rows, d, vocab_start, vocab_count, row_stride
// One invocation writes one element x[n, c]. Grid: ceil(rows·d / WG) workgroups, wrapped into y
// (index = y·row_stride + global x).

override WG: u32 = 256;

struct Params { rows: u32, d: u32, vocab_start: u32, vocab_count: u32, row_stride: u32 }

@group(0) @binding(0) var<storage, read> tok: array<u32>;
@group(0) @binding(1) var<storage, read> pos: array<u32>;
@group(0) @binding(2) var<storage, read> wte: array<f32>;
@group(0) @binding(3) var<storage, read> wpe: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;
@group(0) @binding(5) var<uniform> u: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * u.row_stride + g.x;
  if (i >= u.rows * u.d) { return; }
  let n = i / u.d;
  let c = i % u.d;
  let t = tok[n];
  if (t < u.vocab_start || t - u.vocab_start >= u.vocab_count) { return; }
  x[i] = wte[(t - u.vocab_start) * u.d + c] + wpe[pos[n] * u.d + c];
}
