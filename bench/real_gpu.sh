#!/usr/bin/env bash
# Kernel tests and speed benchmarks on a machine with a real GPU, in one go:
#
#   bash bench/real_gpu.sh [LOG_DIR]        (LOG_DIR default: runs/real_gpu)
#
# 1. the GPU-facing tests (every kernel against its TypeScript twin, whole engine steps against the
#    reference engine) on this machine's adapter: a real GPU runs workgroups truly in parallel and
#    catches races a software adapter hides;
# 2. bench/train_step.ts with --profile --back-to-back (phases at working clocks; AuxK 256 at 5 %
#    dead, then AuxK off), then --back-to-back with 0, 2 and 4 steps ahead (AuxK 256 and off), and
#    bench/encoder_gemm_bench.ts;
#    and (part "dense") the dense AuxK path on storage GEMMs (--dense-aux) against the sparse path
#    GPUs take by default, at 5 % dead, then the dense path profiled per dispatch; (part "presets") the Tree SAE and Matryoshka at 5 % dead,
#    profiled;
#    (part "train") `train` end to end on a synthetic f16 store;
# 3. bench/torch_train_step.py, the PyTorch twin of the step, when python3 has torch.
# DENO names the Deno binary (default: deno); DENO_WEBGPU_BACKEND defaults to vulkan. Each part
# has its own time limit so one hang cannot eat the others; logs go to LOG_DIR, a summary to stdout.
# PARTS picks the parts to run (default: "tests wait step noaux b2b dense presets train gemm torch"), to
# fit a short lease; "wait" is bench/readback_wait.ts (how long mapAsync and submit hold the host
# while the GPU works). TESTS_LIMIT is the tests' time limit in seconds (default 300).
set -u
parts=" ${PARTS:-tests wait step noaux b2b dense presets train gemm torch} "
want() { [[ $parts == *" $1 "* ]]; }
for p in $parts; do
  case $p in
    tests | wait | step | noaux | b2b | dense | presets | train | gemm | torch) ;;
    *)
      echo "bench/real_gpu.sh: unknown part '$p' in PARTS (known: tests wait step noaux b2b dense presets train gemm torch)" >&2
      exit 2
      ;;
  esac
done
out=${1:-runs/real_gpu}
mkdir -p "$out"
deno=${DENO:-deno}
export DENO_WEBGPU_BACKEND=${DENO_WEBGPU_BACKEND:-vulkan}
export NO_COLOR=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv 2>/dev/null

part() { # part NAME SECONDS CMD...: run CMD under a time limit, log to $out/NAME.log
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc in $((SECONDS - t0)) s"
}

# The GPU-facing test files whose module graph needs no npm package (a GPU box may be offline).
tests=()
for f in tests/{gpu,sae,tree,train,eval}/*_test.ts tests/lm/kernels_test.ts; do
  # gl_backend_test runs kernels on Mesa's GL path in a child process: a software-adapter check.
  [[ $f == */gl_backend_test.ts ]] && continue
  "$deno" info --json --node-modules-dir=none "$f" 2>&1 | grep -q 'npm:\|npm package' || tests+=("$f")
done
if want tests; then
  echo "== ${#tests[@]} test files"
  part tests "${TESTS_LIMIT:-300}" "$deno" test -A --no-check --node-modules-dir=none "${tests[@]}"
  grep -E "^(ok|FAILED) \||=> |error:" "$out/tests.log" | tail -n 25
fi
# SM clock and power once a second during the benchmarks (NVIDIA only), to read the clocks the steps ran at.
dmon=""
if command -v nvidia-smi >/dev/null && [[ $parts != " tests " ]]; then
  nvidia-smi dmon -s pc -d 1 >"$out/dmon.log" 2>&1 &
  dmon=$!
fi
if want wait; then
  part readback_wait 60 "$deno" run -A bench/readback_wait.ts
  cat "$out/readback_wait.log"
fi
if want step; then
  part train_step 150 "$deno" run -A bench/train_step.ts --profile --back-to-back --steps 200 --dead-every 20
  cat "$out/train_step.log"
fi
if want noaux; then
  part train_step_noaux 90 "$deno" run -A bench/train_step.ts --profile --back-to-back --steps 200 --aux-k 0
  cat "$out/train_step_noaux.log"
fi
# Steps as the trainer runs them (2 or 4 ahead; 4 is its default), and one at a time: what keeping the GPU fed is
# worth, with AuxK running in every step (256) and without. 200 steps, so that the clocks' ramp-up
# from idle (40 steps took 12–17 ms each where 300 took 9 ms on an H200) weighs little.
if want b2b; then
  part train_step_b2b 300 sh -c "for n in 24576 6144; do for x in 256 0; do for a in 0 2 4; do \
    \"$deno\" run -A bench/train_step.ts --steps 200 --back-to-back --ahead \$a --n \$n --aux-k \$x; \
    done; done; done"
  grep -v '^adapter' "$out/train_step_b2b.log"
fi
# Which AuxK path GPUs should take when few features are dead: the sparse one (their default) or
# the dense products on storage GEMMs (GpuEngineOptions.denseAux), back to back at 5 % dead.
if want dense; then
  part dense_aux 240 sh -c "for n in 24576 6144; do for f in '' --dense-aux; do \
    \"$deno\" run -A bench/train_step.ts --steps 200 --back-to-back --dead-every 20 --n \$n \$f; \
    done; done"
  grep -v '^adapter' "$out/dense_aux.log"
  # Each dense dispatch at working clocks: whether the gradient GEMMs (few output tiles, K = B) are
  # worth splitting along K.
  part dense_aux_profile 120 "$deno" run -A bench/train_step.ts --steps 50 --back-to-back \
    --dead-every 20 --n 24576 --dense-aux --profile --dispatches
  grep -E '^d=|gemm|reduce_features|AuxK' "$out/dense_aux_profile.log"
fi
# The Tree SAE and Matryoshka at the paper's main shape (n = 24 576, L0 = 32), back to back, with
# their phases at working clocks (their own kernels: the tree's top-k, the loss sums of 4 levels).
if want presets; then
  part presets 200 sh -c "for p in tree-4layer-l0-32 matryoshka-4layer-l0-32; do \
    \"$deno\" run -A bench/train_step.ts --steps 200 --back-to-back --profile --dead-every 20 --preset \$p; \
    done"
  grep -v '^adapter' "$out/presets.log"
fi
# The trainer end to end (`train` on an f16 store: the input read ahead in a worker, f16 batches
# widened on the GPU): TopK at n = 24 576, k = 32, B = 4096, no feature dead yet (AuxK idle), 500
# steps; the steady rate from metrics.jsonl after its first line (each line's tokens_per_s is the
# rate since the line before; the first includes the kernel compiles), to set against part
# "noaux"'s engine-only figure. The store stays in /tmp (630 MB).
if want train; then
  e2e=/tmp/arbor_e2e
  part train_e2e 300 sh -c "\"$deno\" run -A cli/main.ts synth --out $e2e/data --d-in 768 --tokens 204800 \
    --dtype f16 --overwrite -q && \"$deno\" run -A cli/main.ts train --data $e2e/data --out $e2e/run \
    --arch topk --n-features 24576 --k 32 --max-tokens 2048000 --log-every 50 --checkpoint-every 0 \
    --overwrite -q"
  "$deno" eval 'const l = Deno.readTextFileSync(Deno.args[0]).trim().split("\n").map((x) => JSON.parse(x));
    let s = 0;
    for (let i = 1; i < l.length; i++) s += (l[i].tokens - l[i - 1].tokens) / l[i].tokens_per_s;
    const [a, b] = [l[0], l.at(-1)];
    console.log(`train end to end: steps ${a.step}..${b.step}: ${((b.tokens - a.tokens) / s).toFixed(0)} tokens/s`);' \
    "$e2e/run/metrics.jsonl" 2>&1 | tee -a "$out/train_e2e.log"
fi
if want gemm; then
  part encoder_gemm 120 "$deno" run -A bench/encoder_gemm_bench.ts --reps 3
  tail -n 20 "$out/encoder_gemm.log"
fi
# Print the clock log where dmon wrote one (a kill right after its start can leave none).
[ -n "$dmon" ] && kill "$dmon" && sleep 0.2 && [ -s "$out/dmon.log" ] && awk 'NR <= 2 || NR % 5 == 0' "$out/dmon.log" | head -n 40
if want torch && python3 -c "import torch" 2>/dev/null; then
  part torch 120 python3 bench/torch_train_step.py --steps 10
  cat "$out/torch.log"
  part torch_noaux 60 python3 bench/torch_train_step.py --steps 10 --aux-k 0
  cat "$out/torch_noaux.log"
fi
