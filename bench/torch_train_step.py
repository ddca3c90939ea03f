"""PyTorch twin of bench/train_step.ts: one TopK SAE training step with AuxK, timed on the same shape.

    python3 bench/torch_train_step.py [--device cuda|cpu] [--n 24576,6144] [--batch 4096]
                                      [--steps 5] [--aux-k 256] [--tf32] [--threads N]

The step does what Arbor's GpuEngine step does, written the way a PyTorch user would: per-token
standardisation; dense encoder GEMM pre = (xs - b_dec) W_enc^T; top-k (k = 32) with ReLU; sparse
decoder through F.embedding_bag (no dense [B, n] code matrix); AuxK (top-256 among the dead
features' pre-activations, decoded the same way, loss on the residual, coefficient 1/32); loss
normalised by the batch variance; autograd backward (the encoder gradient goes through topk's
scatter: a dense [B, n] gradient and a dense GEMM); the decoder gradient's component along each
column removed; Adam (eps 6.25e-10; fused on CUDA); decoder rows renormalised; dead counters
updated; one scalar read back per step. Half the features are dead before every step, as in the
Deno bench. float32 throughout (TF32 off unless --tf32). Prints tokens/s and the encoder GEMM
alone in GFLOP/s (2*B*d*n FLOPs). Not run by the tests; results go in bench/README.md.
"""

import argparse
import time

import torch
import torch.nn.functional as F

D = 768  # GPT-2 small residual width (the benchmark shape)
K = 32  # active features per token (issue benchmark)
AUX_ALPHA = 1 / 32  # AuxK coefficient (paper App. C / Gao et al.)
ADAM_EPS = 6.25e-10  # Adam epsilon of the reference setup (DESIGN §4)
LR = 1e-4  # paper default learning rate


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Sae(torch.nn.Module):
    def __init__(self, n: int, device: torch.device):
        super().__init__()
        g = torch.Generator(device="cpu").manual_seed(1)
        dec = torch.randn(n, D, generator=g)
        dec /= dec.norm(dim=1, keepdim=True)
        self.dec = torch.nn.Parameter(dec.to(device))  # [n, d], unit rows
        self.enc = torch.nn.Parameter(dec.clone().to(device))  # tied at init
        self.b_dec = torch.nn.Parameter(torch.zeros(D, device=device))


def make_batch(B: int, seed: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return ((torch.rand(B, D, generator=g) - 0.5) * 4).to(device)


def train_step(sae, opt, x, dead, since, aux_k):
    B = x.shape[0]
    xs = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True, unbiased=False)
    pre = (xs - sae.b_dec) @ sae.enc.T  # [B, n]
    vals, idx = pre.topk(K, dim=1, sorted=False)
    vals = F.relu(vals)
    recon = F.embedding_bag(idx, sae.dec, per_sample_weights=vals, mode="sum") + sae.b_dec
    err = xs - recon
    total_var = (xs - xs.mean(0)).pow(2).sum()
    loss = err.pow(2).sum() / total_var
    if aux_k > 0:
        aux_pre = pre.masked_fill(~dead, float("-inf"))
        avals, aidx = aux_pre.topk(aux_k, dim=1, sorted=False)
        avals = F.relu(avals)
        ehat = F.embedding_bag(aidx, sae.dec, per_sample_weights=avals, mode="sum")
        e = err.detach()
        aux = (ehat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
        loss = loss + AUX_ALPHA * aux
    opt.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        w, g = sae.dec, sae.dec.grad
        g -= (g * w).sum(1, keepdim=True) * w  # keep the step tangent to the unit sphere
        opt.step()
        w /= w.norm(dim=1, keepdim=True)
        fired = torch.bincount(idx[vals > 0], minlength=since.numel()) > 0
        since += B
        since[fired] = 0
    return loss.item()


def time_gemm(n: int, B: int, device: torch.device, reps: int) -> float:
    xs = make_batch(B, 7, device)
    w = torch.randn(n, D, device=device)
    b = torch.zeros(D, device=device)
    for _ in range(2):
        (xs - b) @ w.T
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        (xs - b) @ w.T
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", default="24576,6144")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--aux-k", type=int, default=256)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matrix products on CUDA")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    ap.add_argument("--dead-every", type=int, default=2, help="mark every N-th feature dead (2 = half)")
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    if a.threads:
        torch.set_num_threads(a.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {name} ({torch.get_num_threads()} CPU threads), "
          f"float32{' + TF32' if a.tf32 else ''}")
    B = a.batch
    for n in [int(v) for v in a.n.split(",")]:
        sae = Sae(n, device)
        fused = {"fused": True} if device.type == "cuda" else {}
        opt = torch.optim.Adam(sae.parameters(), lr=LR, eps=ADAM_EPS, **fused)
        dead = torch.zeros(n, dtype=torch.bool, device=device)
        dead[:: a.dead_every] = True  # half the features dead by default, as in the Deno bench
        since = torch.zeros(n, dtype=torch.long, device=device)
        batches = [make_batch(B, 2 + s, device) for s in range(a.steps + 1)]
        train_step(sae, opt, batches[0], dead, since, a.aux_k)  # warm-up, not timed
        sync(device)
        times = []
        for s in range(a.steps):
            t0 = time.perf_counter()
            train_step(sae, opt, batches[s + 1], dead, since, a.aux_k)
            sync(device)
            times.append(time.perf_counter() - t0)
        sec = sorted(times)[len(times) // 2]
        g = time_gemm(n, B, device, max(3, a.steps))
        gflops = 2 * B * D * n / g / 1e9
        print(f"d={D} n={n} k={K} B={B} auxK={a.aux_k}: step {sec * 1000:.1f} ms (median of "
              f"{a.steps}) = {B / sec:.0f} tokens/s; encoder GEMM {g * 1000:.2f} ms = "
              f"{gflops:.0f} GFLOP/s; step / GEMM = {sec / g:.2f}")


if __name__ == "__main__":
    main()
