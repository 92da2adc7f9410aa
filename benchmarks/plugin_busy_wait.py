"""What the harness adds to a reading: busy waits of known duration, as plug-in backends.

Registers the backends of busywait_plugin.py through the `invbench.backends` entry
points (a throw-away dist-info on PYTHONPATH) and, in each try, reads them twice, each
in a fresh process, in ABBA order across tries:

- harness: `invbench run --suite smoke --device cpu --mode fwd` with the plug-ins and
  unfold;
- plain: the same closures (built as `invbench run` builds them, one thread, the
  collector off), called back to back --samples times around perf_counter_ns.

It prints each row's median in both, in microseconds over the wait. `busywait` does
nothing but the wait, so its excess is what the call costs beyond the wait's duration.
`unfold_busywait` is the unfold forward plus the wait; set its plain median beside
the harness's, and the unfold row (timed back to back) beside both.

With --pauses it first times torch's cheapest call (entering and leaving no_grad)
right after spins of several lengths: on a machine whose caches other tenants wear
down, code and data left alone for a few milliseconds come back cold, and a call
after a wait costs more than the same call back to back. Usage:

    python benchmarks/plugin_busy_wait.py [--tries 4] [--wait-ms 5] [--samples 60] [--pauses]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGINS = {"busywait": "BusyWait", "unfold_busywait": "UnfoldBusyWait"}
SUITE = "smoke"


def write_dist_info(site: Path) -> None:
    """A dist-info whose entry points name the plug-ins, as an installed package's would."""
    info = site / "invbench_busywait-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: invbench-busywait\nVersion: 0.0\n")
    lines = [f"{name} = busywait_plugin:{cls}" for name, cls in PLUGINS.items()]
    (info / "entry_points.txt").write_text("[invbench.backends]\n" + "\n".join(lines) + "\n")


def harness(env: dict[str, str], out: Path) -> dict[str, float]:
    """Row medians (ms) of one `invbench run` of the plug-ins and unfold."""
    backends = [arg for name in [*PLUGINS, "unfold"] for arg in ("--backend", name)]
    cmd = [sys.executable, "-m", "invbench", "run", "--suite", SUITE, "--device", "cpu"]
    cmd += ["--mode", "fwd", *backends, "--out", str(out)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    import pandas as pd

    rows = pd.read_parquet(out / "results.parquet")
    return {
        f"{case}/{backend}": float(ms)
        for case, backend, ms in zip(rows["case"], rows["backend"], rows["median_ms"], strict=True)
    }


def plain(env: dict[str, str], samples: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--plain", "--samples", str(samples)]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def plain_medians(samples: int) -> dict[str, float]:
    """Row medians (ms) of the plug-ins' closures called back to back in this process."""
    import torch

    from invbench.backends.registry import default_registry
    from invbench.core.spec import DeviceKind, Dtype, Mode
    from invbench.core.suites import find_suite
    from invbench.running.levels.op import make_workload

    suite = find_suite(SUITE)
    settings = suite.settings(DeviceKind.CPU)
    torch.set_num_threads(settings.threads or 1)
    registry = default_registry()
    medians: dict[str, float] = {}
    for case in suite.with_batch(settings.batch).cases:
        work = make_workload(case, Dtype.FLOAT32, Mode.FWD, torch.device("cpu"), settings.seed)
        for name in PLUGINS:
            fn = registry.get(name).build(work)
            for _ in range(5):
                fn()
            gc.disable()
            times = []
            for _ in range(samples):
                t0 = time.perf_counter_ns()
                fn()
                times.append((time.perf_counter_ns() - t0) / 1e6)
            gc.enable()
            medians[f"{case.name}/{name}"] = statistics.median(times)
    return medians


def after_pauses(calls: int = 40) -> None:
    """Median and largest cost of entering and leaving no_grad after each pause."""
    import torch
    from busywait_plugin import busy_wait

    print("no_grad enter+exit after a pause (us): pause ms, after a spin, after a sleep")
    for pause_ms in (0.0, 0.1, 1.0, 2.0, 5.0):
        row = []
        for sleep in (False, True):
            times = []
            for _ in range(calls):
                if sleep:
                    time.sleep(pause_ms / 1e3)
                else:
                    busy_wait(pause_ms / 1e3)
                t0 = time.perf_counter_ns()
                with torch.no_grad():
                    pass
                times.append((time.perf_counter_ns() - t0) / 1e3)
            row.append(f"{statistics.median(times):6.1f} (max {max(times):6.1f})")
        print(f"{pause_ms:5.1f}  {row[0]}  {row[1]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tries", type=int, default=4)
    ap.add_argument("--wait-ms", type=float, default=5.0)
    ap.add_argument("--samples", type=int, default=60, help="calls per row in the plain loop")
    ap.add_argument("--pauses", action="store_true", help="first, the cost of a call after a pause")
    ap.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pauses:
        after_pauses()
    if args.plain:
        print(json.dumps(plain_medians(args.samples)))
        return
    wait_ms = args.wait_ms
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        write_dist_info(site)
        path = os.pathsep.join([str(site), str(HERE), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, PYTHONPATH=path, INVBENCH_BUSYWAIT_MS=str(wait_ms))
        print(f"busy wait {wait_ms} ms; columns: microseconds over the wait")
        print(f"{'try':>3} {'row':<26} {'harness':>8} {'plain':>8} {'h - p':>8}  load")
        for i in range(args.tries):
            first_harness = i % 4 in (0, 3)
            load = os.getloadavg()[0]
            if first_harness:
                h = harness(env, site / f"run{i}")
                p = plain(env, args.samples)
            else:
                p = plain(env, args.samples)
                h = harness(env, site / f"run{i}")
            for row in p:
                over_h = (h[row] - wait_ms) * 1e3
                over_p = (p[row] - wait_ms) * 1e3
                diff = over_h - over_p
                print(f"{i:>3} {row:<26} {over_h:8.1f} {over_p:8.1f} {diff:8.1f}  {load:.1f}")
            for row, ms in h.items():
                if row.endswith("/unfold"):
                    print(f"{i:>3} {row:<26} {ms * 1e3:8.1f} {'':>8} {'':>8}  (back to back, us)")


if __name__ == "__main__":
    main()
