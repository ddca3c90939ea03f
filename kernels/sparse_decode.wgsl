// sparse_decode: level reconstructions x̂s_{≤l} from the sparse codes (Arbor SAE contract,
// "Reconstruction"), and the AuxK reconstruction ê (no bias). Never forms a dense [B, n] code matrix.
//
//   out[l, b, j] = bias·bDec[j] + Σ_{slots s of row b with level(s) ≤ l} val[b, s] · decW[idx[b, s], j]
//
// Bindings: 0 idx    array<u32>  [B, K]     feature per slot (0xFFFFFFFF = unused, skipped)
//           1 val    array<f32>  [B, K]     value per slot (0 contributes nothing and is skipped)
//           2 decW   array<f32>  [n, d]     decoder rows
//           3 bDec   array<f32>  [d]
//           4 bounds array<u32>  [L]        level ends, ascending (see mode)
//           5 out    array<f32>  [L, B, d]  one reconstruction per level
//           6 u      Params
// level(s) = the first l with key < bounds[l], key = slot position s (mode 0: topk, batchtopk, tree —
// slots are layer-major, bounds = cumulative k) or key = idx (mode 1: matryoshka, bounds = prefix
// ends). Slots whose key is beyond the last bound are ignored.
// One invocation computes column j of row b for every level: it walks the row's K slots in order,
// adding each into its level's partial sum, then writes the cumulative sums (fixed order:
// deterministic). Grid: (ceil(d / WG), B).

override WG: u32 = 64;

// Most levels a reconstruction may have (tree layers / matryoshka prefixes).
const MAX_LEVELS: u32 = 16u;
const NO_SLOT: u32 = 0xffffffffu;

struct Params { B: u32, d: u32, K: u32, L: u32, mode: u32, withBias: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> idx: array<u32>;
@group(0) @binding(1) var<storage, read> val: array<f32>;
@group(0) @binding(2) var<storage, read> decW: array<f32>;
@group(0) @binding(3) var<storage, read> bDec: array<f32>;
@group(0) @binding(4) var<storage, read> bounds: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> u: Params;

@compute @workgroup_size(WG)
fn decode_levels(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  let b = g.y;
  if (j >= u.d || b >= u.B) { return; }
  var part: array<f32, MAX_LEVELS>;
  for (var s = 0u; s < u.K; s++) {
    let f = idx[b * u.K + s];
    let v = val[b * u.K + s];
    if (f == NO_SLOT || v == 0.0) { continue; }
    let key = select(s, f, u.mode == 1u);
    var lev = 0u;
    loop {
      if (lev >= u.L || key < bounds[lev]) { break; }
      lev++;
    }
    if (lev < u.L) { part[lev] = fma(v, decW[f * u.d + j], part[lev]); }
  }
  var acc = select(0.0, bDec[j], u.withBias != 0u);
  for (var l = 0u; l < u.L; l++) {
    acc += part[l];
    out[(l * u.B + b) * u.d + j] = acc;
  }
}
