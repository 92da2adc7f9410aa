"""CPU forward of cuda_ext vs unfold (and optionally compile) on the resnet-shapes layers.

Runs the backends side by side in one process, interleaved, float32, and prints the
median time of each, the speed-up of cuda_ext, and the peak memory of cuda_ext and
unfold (inputs plus what the op adds at its peak) relative to inputs + output. Usage:

    python benchmarks/cpu_resnet_shapes.py [--batch 8] [--repeats 5] [--compile] [--backward]

With --backward each call is forward plus both gradients (memory columns omitted).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import invbench
from invbench.core.spec import Geometry
from invbench.measure.memory import cpu_peak_bytes

# name, C, H, stride, K, G (the resnet-shapes suite)
LAYERS = [
    ("stem", 32, 112, 1, 3, 2),
    ("layer1", 64, 56, 1, 7, 4),
    ("layer2-1st", 128, 56, 2, 7, 8),
    ("layer2", 128, 28, 1, 7, 8),
    ("layer3-1st", 256, 28, 2, 7, 16),
    ("layer3", 256, 14, 1, 7, 16),
    ("layer4-1st", 512, 14, 2, 7, 32),
    ("layer4", 512, 7, 1, 7, 32),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time the compile backend")
    ap.add_argument("--backward", action="store_true", help="time forward + both gradients")
    args = ap.parse_args()
    backends = ["cuda_ext", "unfold"] + (["compile"] if args.compile else [])
    torch.manual_seed(0)
    what = "forward + backward" if args.backward else "forward"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"float32 {what}"
    )
    header = " ".join(f"{b + ' ms':>12}" for b in backends)
    vs_compile = " vs compile" if args.compile else ""
    memory = "" if args.backward else f" {'peak/io':>8} {'unfold':>8}"
    print(f"{'layer':<11} {header} {'vs unfold':>10}{vs_compile}{memory}")
    for name, c, h, s, k, g in LAYERS:
        geom = Geometry(args.batch, c, h, h, k, stride=s, groups=g)
        x = torch.randn(geom.x_shape)
        w = torch.randn(geom.weight_shape)

        grad_out = torch.randn(geom.out_shape)
        xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)

        def run(
            b: str,
            x: torch.Tensor = x,
            w: torch.Tensor = w,
            s: int = s,
            xg: torch.Tensor = xg,
            wg: torch.Tensor = wg,
            grad_out: torch.Tensor = grad_out,
        ) -> torch.Tensor:
            if args.backward:
                out = invbench.involution(xg, wg, stride=s, backend=b)
                torch.autograd.grad(out, (xg, wg), grad_out)
                return out.detach()
            with torch.no_grad():
                return invbench.involution(x, w, stride=s, backend=b)

        ref = run("unfold")
        for b in backends:  # warm-up (builds, compiles) and a correctness check
            err = (run(b) - ref).abs().max().item() / ref.abs().max().item()
            assert err < 1e-4, (b, err)
        times: dict[str, list[float]] = {b: [] for b in backends}
        for r in range(args.repeats):
            order = backends if r % 2 == 0 else backends[::-1]  # interleaved, alternating
            for b in order:
                t0 = time.perf_counter()
                run(b)
                times[b].append(time.perf_counter() - t0)
        med = {b: statistics.median(v) * 1e3 for b, v in times.items()}
        cols = " ".join(f"{med[b]:12.2f}" for b in backends)
        line = f"{name:<11} {cols} {med['unfold'] / med['cuda_ext']:9.1f}x"
        if args.compile:
            line += f" {med['compile'] / med['cuda_ext']:9.1f}x"
        if not args.backward:
            inputs = (x.numel() + w.numel()) * 4
            io = inputs + geom.numel("out") * 4
            peak = cpu_peak_bytes(lambda: run("cuda_ext"))  # output + temporaries from torch
            peak_unfold = cpu_peak_bytes(lambda: run("unfold"))
            line += f" {(inputs + peak) / io:8.2f} {(inputs + peak_unfold) / io:8.2f}"
        print(line)


if __name__ == "__main__":
    main()
