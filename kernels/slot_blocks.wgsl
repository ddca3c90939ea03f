// slot_blocks: regroup each row's AuxK slots by block of dead features, so that a decode run one
// block at a time (sparse_decode.wgsl, decode_blocks16_tex) reads decoder rows from a cache-sized
// part of decW. Blocks follow the dead rank (position among the dead features), not the feature
// index: with few features dead, the dead rows of a few feature blocks fit in one block, and the
// decode's later blocks find no slots and skip their re-read and re-write of ê.
//
//   block(f) = min((rank[f] − rank[base]) >> shift, nb − 1) for a valid slot (f ≠ 0xFFFFFFFF),
//              nb for an unused one; rank from the dead list (dead_list.wgsl)
//   idxOut[b, ·], valOut[b, ·] = the row's K slots ordered by block, slot order kept inside a block
//   starts[b, j] = first position of block j in the regrouped row (j = 0..nb; starts[b, nb] = the
//                  first unused slot, K if none)
//
// Bindings: 0 idx    array<u32>  [B, K]       feature per slot, 0xFFFFFFFF = unused
//           1 val    array<f32>  [B, K]
//           2 idxOut array<u32>  [B, K]
//           3 valOut array<f32>  [B, K]
//           4 starts array<u32>  [B, nb + 1]
//           5 u      Params
//           6 list   array<u32>  [1 + 2n]     dead list: [count, dead features, rank of each feature]
// Entry group_slots: one invocation regroups one row — a stable counting sort over its K slots
// (count per block, exclusive prefix, scatter in slot order), so the output is deterministic.
// Grid: ceil(B / WG) workgroups.

override WG: u32 = 64;

// Most blocks a row may be split into (the host sizes blocks to stay within it).
const MAX_BLOCKS: u32 = 256u;
const NO_SLOT: u32 = 0xffffffffu;

struct Params { B: u32, K: u32, base: u32, shift: u32, nb: u32, n: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> idx: array<u32>;
@group(0) @binding(1) var<storage, read> val: array<f32>;
@group(0) @binding(2) var<storage, read_write> idxOut: array<u32>;
@group(0) @binding(3) var<storage, read_write> valOut: array<f32>;
@group(0) @binding(4) var<storage, read_write> starts: array<u32>;
@group(0) @binding(5) var<uniform> u: Params;
@group(0) @binding(6) var<storage, read> list: array<u32>;

// baseRank = rank[base]: dead features below the group's first feature.
fn block_of(f: u32, baseRank: u32) -> u32 {
  if (f == NO_SLOT) { return u.nb; }
  return min((list[1u + u.n + f] - baseRank) >> u.shift, u.nb - 1u);
}

@compute @workgroup_size(WG)
fn group_slots(@builtin(global_invocation_id) g: vec3u) {
  let b = g.x;
  if (b >= u.B) { return; }
  var next: array<u32, MAX_BLOCKS + 1u>;
  for (var j = 0u; j <= u.nb; j++) { next[j] = 0u; }
  let row = b * u.K;
  let baseRank = list[1u + u.n + u.base];
  for (var s = 0u; s < u.K; s++) { next[block_of(idx[row + s], baseRank)] += 1u; }
  // Exclusive prefix: next[j] becomes block j's first position.
  var at = 0u;
  let sb = b * (u.nb + 1u);
  for (var j = 0u; j <= u.nb; j++) {
    let c = next[j];
    next[j] = at;
    starts[sb + j] = at;
    at += c;
  }
  for (var s = 0u; s < u.K; s++) {
    let f = idx[row + s];
    let j = block_of(f, baseRank);
    let p = next[j];
    next[j] = p + 1u;
    idxOut[row + p] = f;
    valOut[row + p] = val[row + s];
  }
}
