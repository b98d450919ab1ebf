"""Where a DDRM training epoch's time goes on this machine, and the floor the hardware sets; prints JSON.

For the denoiser shapes of a DDRM config (default: the reference MF configuration, 64-d embeddings, batch 2048,
429,993 triples per epoch as on ml-1m_noisy) it times, in fp32 and bf16:

- every matmul of one training step of one denoiser (forward, weight gradient, input gradient; the first layer's
  inputs are frozen embeddings, so it has no input gradient), each alone: GFLOP/s and the sum, which times two
  denoisers and the steps per epoch is the **matmul floor** of an epoch;
- the real DDRM training step (``DDRMModule.loss``, backward, Adam) at the full batch and at batch 16, where the
  arithmetic is negligible: the second is the **fixed per-step cost** (Python dispatch, Adam, the seeded RNG).

The rest of the measured step is memory-bound elementwise work. The headline is ``step_to_floor``: the measured
step over matmuls-plus-fixed, a ratio measured in one run, so it compares across machines where seconds do not.
Every time is the minimum over ``--reps`` calls (robust to other load on a shared machine), and the whole
measurement is repeated ``--rounds`` times, interleaved; the medians over rounds are reported with each round's
ratio. ``bf16_auto`` is what ``ddrm.bf16: auto`` decides here (its probe, ``ddrm.precision``). Synthetic
embeddings stand in for a backend (the timing does not depend on their values). ``benchmarks/bench_ddrm.py``
measures real epochs end to end.

    python benchmarks/bench_floor.py [--dims 100 1000] [--dim 64] [--batch 2048] [--triples 429993] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from _common import machine

from ddrm.backends import Backend, build
from ddrm.data import Interactions, SyntheticConfig, make_synthetic
from ddrm.denoiser import MLPDenoiser
from ddrm.model import DDRMConfig, DDRMModule
from ddrm.precision import probe_bf16


def _min_ms(fn: Callable[[], object], reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def layer_sizes(dim: int, dims: list[int], time_dim: int) -> list[tuple[int, int]]:
    """(in, out) of each denoiser GEMM as ddrm runs it, read off an :class:`MLPDenoiser`: the first GEMM takes
    [x_t, cond] only; its time share is a per-step table gathered per row."""
    linears = [m for m in MLPDenoiser(dim, dims, time_dim).mlp if isinstance(m, torch.nn.Linear)]
    return [(m.in_features - (time_dim if k == 0 else 0), m.out_features) for k, m in enumerate(linears)]


def matmuls(batch: int, layers: list[tuple[int, int]], dtype: torch.dtype, reps: int) -> list[dict]:
    """Each GEMM of one denoiser's training step, timed alone."""
    out = []
    for k, (n_in, n_out) in enumerate(layers):
        x = torch.randn(batch, n_in, dtype=dtype)
        w = torch.randn(n_out, n_in, dtype=dtype) * 0.05
        g = torch.randn(batch, n_out, dtype=dtype)
        flop = 2 * batch * n_in * n_out
        kinds = {"forward": (x, w.t()), "weight_grad": (g.t(), x)}
        if k > 0:
            kinds["input_grad"] = (g, w)
        for kind, (a, b) in kinds.items():
            ms = _min_ms(partial(torch.matmul, a, b), reps)
            out.append({"layer": f"{n_in}->{n_out}", "kind": kind, "ms": round(ms, 4),
                        "gflop_s": round(flop / ms / 1e6, 1), "gflop": flop / 1e9})
    return out


def step_ms(backend: Backend, data: Interactions, batch: int, cfg: DDRMConfig, reps: int) -> float:
    """Minimum milliseconds of one real DDRM training step (loss, backward, Adam) at ``batch``."""
    module = DDRMModule(backend.module_, data.train, cfg, seed=0)
    opt = torch.optim.Adam(list(module.user_denoiser.parameters()) + list(module.item_denoiser.parameters()),
                           lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        users = torch.randint(0, data.n_users, (batch,), generator=gen)
        pos, neg = (torch.randint(0, data.n_items, (batch,), generator=gen) for _ in range(2))
        loss = module.loss(users, pos, neg)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _min_ms(step, reps)


def measure(backend: Backend, data: Interactions, args: argparse.Namespace, bf16: bool,
            layers: list[tuple[int, int]]) -> dict:
    """One round of one precision: every GEMM alone, the full step and the batch-16 step."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    mm = matmuls(args.batch, layers, dtype, args.reps)
    mm_ms = 2 * sum(m["ms"] for m in mm)  # two denoisers
    cfg = DDRMConfig(dims=tuple(args.dims), time_dim=args.time_dim, bf16=bf16)
    full, small = (step_ms(backend, data, b, cfg, args.reps) for b in (args.batch, 16))
    return {"matmuls": mm, "gflop_per_step": 2 * sum(m["gflop"] for m in mm), "matmul_ms_per_step": mm_ms,
            "step_ms": full, "fixed_ms_per_step": small, "step_to_floor": full / (mm_ms + small)}


def summarise(rounds: list[dict], steps: int) -> dict:
    """Medians over rounds (each GEMM too), the epoch extrapolations, and every round's ratio."""
    med = {k: statistics.median(r[k] for r in rounds) for k in ("matmul_ms_per_step", "step_ms", "fixed_ms_per_step",
                                                                "step_to_floor")}
    mm = [{**m, "ms": round(statistics.median(r["matmuls"][j]["ms"] for r in rounds), 4)}
          for j, m in enumerate(rounds[0]["matmuls"])]
    for m in mm:
        m["gflop_s"] = round(m["gflop"] / m["ms"] * 1e3, 1)
    mm_ms, full, small = med["matmul_ms_per_step"], med["step_ms"], med["fixed_ms_per_step"]
    return {
        "matmuls": mm, "gflop_per_step": rounds[0]["gflop_per_step"],
        "matmul_ms_per_step": round(mm_ms, 2), "step_ms": round(full, 2), "fixed_ms_per_step": round(small, 2),
        "elementwise_ms_per_step": round(full - mm_ms - small, 2),
        "step_to_floor": round(med["step_to_floor"], 3),
        "step_to_floor_by_round": [round(r["step_to_floor"], 3) for r in rounds],
        "epoch_s_matmul_floor": round(mm_ms * steps / 1e3, 2),
        "epoch_s_matmul_plus_fixed": round((mm_ms + small) * steps / 1e3, 2),
        "epoch_s_measured_step": round(full * steps / 1e3, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--time-dim", type=int, default=10)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--triples", type=int, default=429_993)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    out: dict = {"benchmark": "floor", "machine": machine(), "dims": args.dims, "dim": args.dim,
                 "batch": args.batch, "triples_per_epoch": args.triples, "rounds": args.rounds, "runs": []}
    steps = -(-args.triples // args.batch)
    layers = layer_sizes(args.dim, args.dims, args.time_dim)
    data = make_synthetic(SyntheticConfig(n_users=2000, n_items=1500, seed=0))
    backend = build("mf", dim=args.dim, epochs=0, quiet=True).fit(data)
    rounds: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.rounds):
        for bf16 in (False, True):
            rounds[bf16].append(measure(backend, data, args, bf16, layers))
    out["runs"] = [{"bf16": bf16, **summarise(rounds[bf16], steps)} for bf16 in (False, True)]
    module = DDRMModule(backend.module_, data.train,
                        DDRMConfig(dims=tuple(args.dims), time_dim=args.time_dim), seed=0).train(True)
    out["bf16_auto"] = probe_bf16(partial(module.probe_step, args.batch))[1]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
