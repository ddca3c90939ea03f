// aux_dense: AuxK's decode and backward over the dead features as dense products, when few are
// dead (lib/sae/ops/aux_dense.ts). The sparse path takes each AuxK entry alone — a dot product per
// entry (sparse_backward.wgsl entry_dpre4x4) and each dead feature's entries summed one by one
// (reduce_features16), ~0.4 + ~1 s per step at B = 4096 with 1 M AuxK entries on llvmpipe; here
// they are texture GEMMs (encoder_gemm.wgsl) over the D dead features' decoder rows W_d by rank:
//   G = U·W_dᵀ [B, dcap]                    U = the AuxK residual gradient; dpre of an entry (b, r)
//                                            = G[b, r] where its value > 0, else 0
//   ∇W_dec[dead r] = Σ_b A[r, b]·U[b]        A = the AuxK values scattered into [dcap, B]
//   ∇W_enc[dead r] = Σ_b P[r, b]·xs[b] − s_r·b_dec,  P = the dpre scattered alike, s_r = Σ_b P[r, b]
// Rank r counts the dead features of the group [base, end) below the feature (dead_list.wgsl).
// Whether the dense or the sparse path runs is decided here, on the GPU, from the dead count, so
// the choice (and so the weights) never depends on how far the host is ahead of the GPU: `plan`
// writes the indirect dispatch arguments of both paths, zero workgroups for the one not taken.
//
// Entry plan (one invocation): D = dead features of the group; dense = 0 < D ≤ dcap.
//   Bindings: 0 list array<u32> [1 + 2n]; 1 args array<u32> [3·MAX_ARGS + 2] out: per gated
//   dispatch i (x, y, z) = its grid (the GEMMs' rows cut to D) if its path is taken, else 0;
//   then D, dense; 2 g Grids.
// Entry scatter_dense: one invocation per AuxK slot i = b·ka + s of the segment: A[r, b] = val,
//   P[r, b] = dpre[segBase + i], or with u.fromG = 1 the entry's dot product G[b, r] (0 where
//   val ≤ 0, as entry_dpre gives) (r = rank(f) − rank(base)); unused slots are skipped.
//   Bindings: 0 list; 1 idx [B, ka] u32; 2 val [B, ka]; 3 dpre [E] or G [B, dcap]; 4 A [dcap, B];
//   5 P [dcap, B]; 6 u Params. A and P must be zero beforehand.
// Entry gather_rows: W_d[r, j] = decW[f_r, j] for the dead feature f_r of rank r < D, 0 up to dcap.
//   Bindings: 0 list; 1 decW [n, d]; 2 W_d [dcap, d]; 3 u Params.
// Entry gather_rows_tex4: the same from decW's matrix texture (binding 1), four columns per
//   invocation (d % 4 == 0).
// Entry transpose: out[j, b] = in[srcOff + b·d + j] for b < B, j < d (one invocation per element).
//   Bindings: 0 in; 1 out [d, B]; 2 u Params.
// Entry transpose_tex4: the same from the rows of a matrix texture from row srcOff, four outputs
//   per invocation (B % 4 == 0). Bindings: 0 in texture_2d_array; 1 out [d, B] as vec4; 2 u Params.
// Entry row_sums: s[r] = Σ_b P[r, b] in order (one invocation per r < dcap).
//   Bindings: 0 P; 1 s [dcap]; 2 u Params.
// Entry merge: for r < D, j < d, f = the dead feature of rank r: gradDec[f, j] += GD[r, j];
//   gradEnc[f, j] += GE[r, j] − s_r·bDec[j]; sum[f] += s_r (j = 0). Runs after the sparse
//   reduction, which then holds the main entries' sums only.
//   Bindings: 0 list; 1 GD [dcap, d]; 2 GE [dcap, d]; 3 s; 4 bDec; 5 gradDec; 6 gradEnc; 7 sum;
//   8 u Params. Entry merge4: the same four columns per invocation on vec4 views (d % 4 == 0).
// Forward: the AuxK decode ê = A_f·W_d as one more texture GEMM (instead of the slot-by-slot
// decode, ~0.4 s per step), its sum cut to the D columns the forward's own plan writes:
// Entry scatter_codes: one invocation per AuxK slot i = b·ka + s: A_f[b, r] = val (r as above);
//   unused slots skipped. Bindings: 0 list; 1 idx [B, ka]; 2 val [B, ka]; 3 A_f [B, dcap] (zero
//   beforehand); 4 u Params.
// Entry gather_cols: W_dᵀ[j, r] = decW[f_r, j] for r < D, 0 up to dcap (gather_rows transposed).
//   Bindings: 0 list; 1 decW [n, d]; 2 W_dᵀ [d, dcap]; 3 u Params.
// Grids of the element-wise entries are 1-D, wrapped into y past u.rowStride invocations.

override WG: u32 = 64;

const NO_SLOT: u32 = 0xffffffffu;
// Gated dispatches one plan can steer (the size of Grids.g): the forward's blocked AuxK decode
// gates up to one dispatch per block of dead features.
const MAX_ARGS: u32 = 64u;
const COLS_CUT: u32 = 65536u;

struct Params {
  B: u32, d: u32, n: u32, ka: u32,
  base: u32, end: u32, dcap: u32, segBase: u32,
  srcOff: u32, rowStride: u32, fromG: u32, pad1: u32,
}

// Per gated dispatch: (x, y, z, path): path 0 = sparse, 1 = dense, 2 ≤ R < COLS_CUT = dense with y
// cut to ⌈D / R⌉ (a GEMM over the dead rows, R rows per workgroup row), COLS_CUT + C = dense with x
// cut to ⌈D / C⌉ (a GEMM over the dead columns, C per workgroup); count = dispatches used.
struct Grids { base: u32, end: u32, n: u32, dcap: u32, count: u32, pad0: u32, pad1: u32, pad2: u32, g: array<vec4u, MAX_ARGS> }

// The dead list (dead_list.wgsl) of plan, scatter_dense, gather_rows and merge: [count, dead
// features ascending, rank of each feature].
@group(0) @binding(0) var<storage, read> dl: array<u32>;

// Dead features in [base, f) (f = n: up to the end).
fn rank(n: u32, base: u32, f: u32) -> u32 {
  return select(dl[0], dl[1u + n + f], f < n) - dl[1u + n + base];
}

// The dead feature of rank r counted from base.
fn dead_at(n: u32, base: u32, r: u32) -> u32 {
  return dl[1u + dl[1u + n + base] + r];
}

@group(0) @binding(1) var<storage, read_write> pl_args: array<u32>;
@group(0) @binding(2) var<uniform> pl_g: Grids;


@compute @workgroup_size(1)
fn plan() {
  let D = rank(pl_g.n, pl_g.base, pl_g.end);
  let dense = D > 0u && D <= pl_g.dcap;
  for (var i = 0u; i < MAX_ARGS; i++) {
    let g = pl_g.g[i];
    let on = i < pl_g.count && (g.w >= 1u) == dense;
    let y = select(g.y, min(g.y, (D + g.w - 1u) / max(g.w, 1u)), g.w >= 2u && g.w < COLS_CUT);
    let c = max(g.w, COLS_CUT + 1u) - COLS_CUT;
    let x = select(g.x, min(g.x, (D + c - 1u) / c), g.w > COLS_CUT);
    pl_args[3u * i] = select(0u, x, on);
    pl_args[3u * i + 1u] = select(0u, y, on);
    pl_args[3u * i + 2u] = select(0u, g.z, on);
  }
  pl_args[3u * MAX_ARGS] = D;
  pl_args[3u * MAX_ARGS + 1u] = select(0u, 1u, dense);
}

@group(0) @binding(1) var<storage, read> sd_idx: array<u32>;
@group(0) @binding(2) var<storage, read> sd_val: array<f32>;
@group(0) @binding(3) var<storage, read> sd_dpre: array<f32>;
@group(0) @binding(4) var<storage, read_write> sd_a: array<f32>;
@group(0) @binding(5) var<storage, read_write> sd_p: array<f32>;
@group(0) @binding(6) var<uniform> sd_u: Params;


@compute @workgroup_size(WG)
fn scatter_dense(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * sd_u.rowStride + gid.x;
  if (i >= sd_u.B * sd_u.ka) { return; }
  let f = sd_idx[i];
  if (f == NO_SLOT) { return; }
  let r = rank(sd_u.n, sd_u.base, f);
  if (r >= sd_u.dcap) { return; }
  let b = i / sd_u.ka;
  let v = sd_val[i];
  sd_a[r * sd_u.B + b] = v;
  if (sd_u.fromG != 0u) {
    // Binding 2 holds G = U·W_dᵀ [B, dcap]; an entry's dpre is its dot product where val > 0.
    sd_p[r * sd_u.B + b] = select(0.0, sd_dpre[b * sd_u.dcap + r], v > 0.0);
  } else {
    sd_p[r * sd_u.B + b] = sd_dpre[sd_u.segBase + i];
  }
}

@group(0) @binding(1) var<storage, read> gr_dec: array<f32>;
@group(0) @binding(2) var<storage, read_write> gr_out: array<f32>;
@group(0) @binding(3) var<uniform> gr_u: Params;


@compute @workgroup_size(WG)
fn gather_rows(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * gr_u.rowStride + gid.x;
  let d = gr_u.d;
  if (i >= gr_u.dcap * d) { return; }
  let r = i / d;
  let D = rank(gr_u.n, gr_u.base, gr_u.end);
  var w = 0.0;
  if (r < D) { w = gr_dec[dead_at(gr_u.n, gr_u.base, r) * d + i % d]; }
  gr_out[i] = w;
}

// With decW's matrix texture (software adapters; d % 4 == 0): four columns per invocation, the
// dead row's texel (j / 4, f % TEX_ROWS) of layer f / TEX_ROWS instead of four storage loads.
@group(0) @binding(1) var gr_t: texture_2d_array<f32>;
@group(0) @binding(2) var<storage, read_write> gr_out4: array<vec4f>;

@compute @workgroup_size(WG)
fn gather_rows_tex4(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * gr_u.rowStride + gid.x;
  let d4 = gr_u.d / 4u;
  if (i >= gr_u.dcap * d4) { return; }
  let r = i / d4;
  let D = rank(gr_u.n, gr_u.base, gr_u.end);
  var w = vec4f(0.0);
  if (r < D) {
    let f = dead_at(gr_u.n, gr_u.base, r);
    w = textureLoad(gr_t, vec2i(i32(i % d4), i32(f % TEX_ROWS)), i32(f / TEX_ROWS), 0);
  }
  gr_out4[i] = w;
}

@group(0) @binding(0) var<storage, read> tr_in: array<f32>;
@group(0) @binding(1) var<storage, read_write> tr_out: array<f32>;
@group(0) @binding(2) var<uniform> tr_u: Params;

@compute @workgroup_size(WG)
fn transpose(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * tr_u.rowStride + gid.x;
  if (i >= tr_u.B * tr_u.d) { return; }
  // i walks the output in order (j major) so that the writes are sequential.
  let j = i / tr_u.B;
  let b = i % tr_u.B;
  tr_out[i] = tr_in[tr_u.srcOff + b * tr_u.d + j];
}

// With the source's matrix texture (software adapters; B % 4 == 0): out[j, 4c .. 4c + 3] = column j
// of texture rows srcOff + 4c .. srcOff + 4c + 3 (row q at texel (j / 4, q % TEX_ROWS) of layer
// q / TEX_ROWS), one vec4 store per invocation and four texel fetches instead of four strided
// storage loads.
const TEX_ROWS: u32 = 4096u;
@group(0) @binding(0) var tr_t: texture_2d_array<f32>;
@group(0) @binding(1) var<storage, read_write> tr_out4: array<vec4f>;

fn tr_texel(q: u32, j4: u32) -> vec4f {
  return textureLoad(tr_t, vec2i(i32(j4), i32(q % TEX_ROWS)), i32(q / TEX_ROWS), 0);
}

@compute @workgroup_size(WG)
fn transpose_tex4(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * tr_u.rowStride + gid.x;
  let B4 = tr_u.B / 4u;
  if (i >= B4 * tr_u.d) { return; }
  // i walks the output in order, as in transpose.
  let j = i / B4;
  let q = tr_u.srcOff + 4u * (i % B4);
  let j4 = j / 4u;
  let k = j % 4u;
  tr_out4[i] = vec4f(
    tr_texel(q, j4)[k],
    tr_texel(q + 1u, j4)[k],
    tr_texel(q + 2u, j4)[k],
    tr_texel(q + 3u, j4)[k],
  );
}

@group(0) @binding(0) var<storage, read> rs_p: array<f32>;
@group(0) @binding(1) var<storage, read_write> rs_s: array<f32>;
@group(0) @binding(2) var<uniform> rs_u: Params;

@compute @workgroup_size(WG)
fn row_sums(@builtin(global_invocation_id) gid: vec3u) {
  let r = gid.x;
  if (r >= rs_u.dcap) { return; }
  var s = 0.0;
  for (var b = 0u; b < rs_u.B; b++) { s += rs_p[r * rs_u.B + b]; }
  rs_s[r] = s;
}

@group(0) @binding(1) var<storage, read> mg_gd: array<f32>;
@group(0) @binding(2) var<storage, read> mg_ge: array<f32>;
@group(0) @binding(3) var<storage, read> mg_s: array<f32>;
@group(0) @binding(4) var<storage, read> mg_bdec: array<f32>;
@group(0) @binding(5) var<storage, read_write> mg_gdec: array<f32>;
@group(0) @binding(6) var<storage, read_write> mg_genc: array<f32>;
@group(0) @binding(7) var<storage, read_write> mg_sum: array<f32>;
@group(0) @binding(8) var<uniform> mg_u: Params;


@compute @workgroup_size(WG)
fn merge(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * mg_u.rowStride + gid.x;
  let d = mg_u.d;
  let D = min(rank(mg_u.n, mg_u.base, mg_u.end), mg_u.dcap);
  if (i >= D * d) { return; }
  let r = i / d;
  let j = i % d;
  let f = dead_at(mg_u.n, mg_u.base, r);
  let s = mg_s[r];
  mg_gdec[f * d + j] += mg_gd[i];
  mg_genc[f * d + j] += mg_ge[i] - s * mg_bdec[j];
  if (j == 0u) { mg_sum[f] += s; }
}

// merge on vec4 views (d % 4 == 0): four columns per invocation, one rank lookup for the four;
// the same operations per element, so the same sums.
@group(0) @binding(1) var<storage, read> mg_gd4: array<vec4f>;
@group(0) @binding(2) var<storage, read> mg_ge4: array<vec4f>;
@group(0) @binding(4) var<storage, read> mg_bdec4: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> mg_gdec4: array<vec4f>;
@group(0) @binding(6) var<storage, read_write> mg_genc4: array<vec4f>;

@compute @workgroup_size(WG)
fn merge4(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * mg_u.rowStride + gid.x;
  let d4 = mg_u.d / 4u;
  let D = min(rank(mg_u.n, mg_u.base, mg_u.end), mg_u.dcap);
  if (i >= D * d4) { return; }
  let r = i / d4;
  let j4 = i % d4;
  let f = dead_at(mg_u.n, mg_u.base, r);
  let s = mg_s[r];
  mg_gdec4[f * d4 + j4] += mg_gd4[i];
  mg_genc4[f * d4 + j4] += mg_ge4[i] - s * mg_bdec4[j4];
  if (j4 == 0u) { mg_sum[f] += s; }
}

@group(0) @binding(1) var<storage, read> sc_idx: array<u32>;
@group(0) @binding(2) var<storage, read> sc_val: array<f32>;
@group(0) @binding(3) var<storage, read_write> sc_a: array<f32>;
@group(0) @binding(4) var<uniform> sc_u: Params;

@compute @workgroup_size(WG)
fn scatter_codes(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * sc_u.rowStride + gid.x;
  if (i >= sc_u.B * sc_u.ka) { return; }
  let f = sc_idx[i];
  if (f == NO_SLOT) { return; }
  let r = rank(sc_u.n, sc_u.base, f);
  if (r >= sc_u.dcap) { return; }
  sc_a[(i / sc_u.ka) * sc_u.dcap + r] = sc_val[i];
}

@group(0) @binding(1) var<storage, read> gc_dec: array<f32>;
@group(0) @binding(2) var<storage, read_write> gc_out: array<f32>;
@group(0) @binding(3) var<uniform> gc_u: Params;

@compute @workgroup_size(WG)
fn gather_cols(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * gc_u.rowStride + gid.x;
  let dcap = gc_u.dcap;
  if (i >= dcap * gc_u.d) { return; }
  // i walks the output in order (row j of W_dᵀ, then r) so that the writes are sequential.
  let j = i / dcap;
  let r = i % dcap;
  let D = rank(gc_u.n, gc_u.base, gc_u.end);
  var w = 0.0;
  if (r < D) { w = gc_dec[dead_at(gc_u.n, gc_u.base, r) * gc_u.d + j]; }
  gc_out[i] = w;
}
