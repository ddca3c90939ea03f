// logreg: P independent class-balanced logistic-regression probes trained together
// with mini-batch Adam (lib/eval/logreg.ts; TS twin: fitLogRegReference), plus a
// row-by-row dot product used to compare probe directions with decoder rows.
//
// Shapes: N samples, d inputs, P probes, bs rows in the current mini-batch starting at
// row r0 of the (already shuffled) data. theta [P, d+1]: row j = probe j's weights
// followed by its bias.
//
// Entry dlogits — bindings: 0 x [N*d], 1 y [N*P] (0/1), 2 theta [P*(d+1)], 3 posW [P],
//   4 dz [bs*P] (out), 5 u StepParams. One invocation per (b, j), flat id = b*P + j:
//   z = θ_j·x_{r0+b} + bias_j; dz = (y ? posW_j·(σ(z) − 1) : σ(z)) / bs, the gradient of the
//   batch-mean loss  posW·y·softplus(−z) + (1−y)·softplus(z)  with respect to z.
// Entry grad — bindings: 0 x, 1 dz, 2 grad [P*(d+1)] (out), 3 u. One invocation per
//   (j, i), flat id = j*(d+1) + i: grad = Σ_b dz[b, j] · (i < d ? x[r0+b, i] : 1).
// Entry adam — bindings: 0 theta, 1 grad, 2 m, 3 v, 4 u. One invocation per parameter:
//   g = grad + wd·θ (L2 as in torch Adam), m,v moments, θ -= lr·m̂/(sqrt(v̂)+eps) with
//   bias corrections bc1 = 1−β1^t, bc2 = 1−β2^t computed on the host.
// Entry project — bindings: 0 a [R*d], 1 b [P*d], 2 out [R*P], 3 u. One invocation per
//   (r, j), flat id = r*P + j: out = Σ_i a[r,i]·b[j,i].
// Grids: ceil(count / WG) workgroups in x, wrapped into y past 65535 (row = u.rowGroups·WG).

override WG: u32 = 64;

struct StepParams {
  d: u32, p: u32, r0: u32, bs: u32,
  count: u32, rowGroups: u32, rows: u32, _pad: u32,
  lr: f32, wd: f32, bc1: f32, bc2: f32,
  beta1: f32, beta2: f32, eps: f32, _pad2: f32,
}

@group(0) @binding(0) var<storage, read> dl_x: array<f32>;
@group(0) @binding(1) var<storage, read> dl_y: array<f32>;
@group(0) @binding(2) var<storage, read> dl_theta: array<f32>;
@group(0) @binding(3) var<storage, read> dl_posW: array<f32>;
@group(0) @binding(4) var<storage, read_write> dl_dz: array<f32>;
@group(0) @binding(5) var<uniform> dl_u: StepParams;

fn flatId(g: vec3u, rowGroups: u32) -> u32 {
  return g.y * rowGroups * WG + g.x;
}

@compute @workgroup_size(WG)
fn dlogits(@builtin(global_invocation_id) g: vec3u) {
  let t = flatId(g, dl_u.rowGroups);
  if (t >= dl_u.bs * dl_u.p) { return; }
  let b = t / dl_u.p;
  let j = t % dl_u.p;
  let d = dl_u.d;
  let xo = (dl_u.r0 + b) * d;
  let wo = j * (d + 1u);
  var z = dl_theta[wo + d];
  for (var i = 0u; i < d; i++) { z += dl_theta[wo + i] * dl_x[xo + i]; }
  let s = 1.0 / (1.0 + exp(-clamp(z, -60.0, 60.0)));
  let y = dl_y[(dl_u.r0 + b) * dl_u.p + j];
  var dz = s;
  if (y > 0.5) { dz = dl_posW[j] * (s - 1.0); }
  dl_dz[t] = dz / f32(dl_u.bs);
}

@group(0) @binding(0) var<storage, read> gr_x: array<f32>;
@group(0) @binding(1) var<storage, read> gr_dz: array<f32>;
@group(0) @binding(2) var<storage, read_write> gr_grad: array<f32>;
@group(0) @binding(3) var<uniform> gr_u: StepParams;

@compute @workgroup_size(WG)
fn grad(@builtin(global_invocation_id) g: vec3u) {
  let t = flatId(g, gr_u.rowGroups);
  let d1 = gr_u.d + 1u;
  if (t >= gr_u.p * d1) { return; }
  let j = t / d1;
  let i = t % d1;
  var acc = 0.0;
  if (i == gr_u.d) {
    for (var b = 0u; b < gr_u.bs; b++) { acc += gr_dz[b * gr_u.p + j]; }
  } else {
    for (var b = 0u; b < gr_u.bs; b++) {
      acc += gr_dz[b * gr_u.p + j] * gr_x[(gr_u.r0 + b) * gr_u.d + i];
    }
  }
  gr_grad[t] = acc;
}

@group(0) @binding(0) var<storage, read_write> ad_theta: array<f32>;
@group(0) @binding(1) var<storage, read> ad_grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> ad_m: array<f32>;
@group(0) @binding(3) var<storage, read_write> ad_v: array<f32>;
@group(0) @binding(4) var<uniform> ad_u: StepParams;

@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) g: vec3u) {
  let q = flatId(g, ad_u.rowGroups);
  if (q >= ad_u.count) { return; }
  let gq = ad_grad[q] + ad_u.wd * ad_theta[q];
  let m = ad_u.beta1 * ad_m[q] + (1.0 - ad_u.beta1) * gq;
  let v = ad_u.beta2 * ad_v[q] + (1.0 - ad_u.beta2) * gq * gq;
  ad_m[q] = m;
  ad_v[q] = v;
  ad_theta[q] -= ad_u.lr * (m / ad_u.bc1) / (sqrt(v / ad_u.bc2) + ad_u.eps);
}

@group(0) @binding(0) var<storage, read> pr_a: array<f32>;
@group(0) @binding(1) var<storage, read> pr_b: array<f32>;
@group(0) @binding(2) var<storage, read_write> pr_out: array<f32>;
@group(0) @binding(3) var<uniform> pr_u: StepParams;

@compute @workgroup_size(WG)
fn project(@builtin(global_invocation_id) g: vec3u) {
  let t = flatId(g, pr_u.rowGroups);
  if (t >= pr_u.rows * pr_u.p) { return; }
  let r = t / pr_u.p;
  let j = t % pr_u.p;
  var acc = 0.0;
  for (var i = 0u; i < pr_u.d; i++) { acc += pr_a[r * pr_u.d + i] * pr_b[j * pr_u.d + i]; }
  pr_out[t] = acc;
}
