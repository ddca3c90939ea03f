// dead_list: compact a per-feature dead mask into the ascending list of dead features, so AuxK's
// selection (topk.wgsl select_aux) visits only them, and give every feature its dead rank, so
// AuxK's blocked decode (slot_blocks.wgsl) can group slots by position among the dead features.
//
// Bindings: 0 dead  array<u32>  [n]       non-zero = dead
//           1 list  array<u32>  [1 + 2n]  out: [count, dead feature indices ascending (n slots,
//                                         the first count used), rank of each feature (n)], where
//                                         rank[i] = number of dead features below i
//           2 u     Params                n
// One workgroup: each invocation counts the dead features of its contiguous chunk, a serial
// exclusive scan over the WG counts gives each chunk its first output position, then each
// invocation writes its chunk's dead indices in order and every feature's rank. Grid: 1.

override WG: u32 = 256;

struct Params { n: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> dead: array<u32>;
@group(0) @binding(1) var<storage, read_write> list: array<u32>;
@group(0) @binding(2) var<uniform> u: Params;

var<workgroup> counts: array<u32, WG>;

@compute @workgroup_size(WG)
fn dead_list(@builtin(local_invocation_id) l: vec3u) {
  let t = l.x;
  let chunk = (u.n + WG - 1u) / WG;
  let c0 = min(u.n, t * chunk);
  let c1 = min(u.n, c0 + chunk);
  var c = 0u;
  for (var i = c0; i < c1; i++) {
    if (dead[i] != 0u) { c++; }
  }
  counts[t] = c;
  workgroupBarrier();
  if (t == 0u) {
    var run = 0u;
    for (var j = 0u; j < WG; j++) {
      let e = counts[j];
      counts[j] = run;
      run += e;
    }
    list[0] = run;
  }
  workgroupBarrier();
  var p = 1u + counts[t];
  for (var i = c0; i < c1; i++) {
    list[1u + u.n + i] = p - 1u;
    if (dead[i] != 0u) {
      list[p] = i;
      p++;
    }
  }
}
