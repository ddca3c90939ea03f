// lm_cross_entropy: log-softmax statistics and next-token cross-entropy over logits that arrive
// in vocabulary chunks (full logits [rows, 50257] do not fit one storage binding for big batches).
//
// Entry `update` folds one chunk of logits into a running per-row state
// (max m, sum of exp(logit - m), logit of the target token):
//   Bindings: 0 logits array<f32> [rows, count]   logits of vocabulary ids start .. start+count-1
//             1 targets array<u32> [rows]         target token id per row (any id, maybe outside)
//             2 state  array<f32> [rows, 3]       (m, s, target_logit); first chunk: init = 1
//             3 u      Params                     rows, count, start, init
//   One workgroup handles one row: WG invocations stride over the chunk, reduce max, then the
//   rescaled exp-sum, in workgroup memory; invocation 0 merges with the running state.
// Entry `finish` writes per-row results from the final state (its own bindings; WGSL lets two
// entry points reuse binding numbers as long as neither uses the other's variables):
//   Bindings: 0 state array<f32> [rows, 3], 1 nll array<f32> [rows, 2], 2 u Params (rows)
//   nll[r] = (logsumexp, logsumexp - target_logit), so log-softmax(z) = z - logsumexp.
//   One invocation per row.
// Grid: `update`: rows workgroups (wrapped into y past 65535: row = y·65535 + x);
//       `finish`: ceil(rows / WG) workgroups in x.

override WG: u32 = 64;

struct Params { rows: u32, count: u32, start: u32, init: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(3) var<uniform> u: Params;
@group(0) @binding(0) var<storage, read> final_state: array<f32>;
@group(0) @binding(1) var<storage, read_write> nll: array<f32>;
@group(0) @binding(2) var<uniform> fu: Params;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn update(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * 65535u + wg.x;
  if (row >= u.rows) { return; }
  let base = row * u.count;
  var mx = -3.0e38;
  for (var c = lid; c < u.count; c += WG) { mx = max(mx, logits[base + c]); }
  part[lid] = mx;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { part[lid] = max(part[lid], part[lid + s]); }
    workgroupBarrier();
  }
  let cm = part[0];
  workgroupBarrier();
  var sum = 0.0;
  for (var c = lid; c < u.count; c += WG) { sum += exp(logits[base + c] - cm); }
  part[lid] = sum;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let cs = part[0];
    let t = targets[row];
    var m = cm;
    var total = cs;
    var tl = 0.0;
    if (u.init == 0u) {
      let pm = state[row * 3u];
      m = max(pm, cm);
      total = state[row * 3u + 1u] * exp(pm - m) + cs * exp(cm - m);
      tl = state[row * 3u + 2u];
    }
    if (t >= u.start && t - u.start < u.count) { tl = logits[base + t - u.start]; }
    state[row * 3u] = m;
    state[row * 3u + 1u] = total;
    state[row * 3u + 2u] = tl;
  }
}

@compute @workgroup_size(WG)
fn finish(@builtin(global_invocation_id) g: vec3u) {
  let row = g.x;
  if (row >= fu.rows) { return; }
  let lse = final_state[row * 3u] + log(final_state[row * 3u + 1u]);
  nll[row * 2u] = lse;
  nll[row * 2u + 1u] = lse - final_state[row * 3u + 2u];
}
