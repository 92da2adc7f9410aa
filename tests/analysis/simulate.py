"""Simulated comparisons with known within-run and between-run noise (calibration)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from invbench.analysis.verdicts import ComparePolicy, Judgement, evidence_from_logs, judge
from invbench.core.stats import log_median_variances


def simulate_side(
    rng: np.random.Generator,
    level: np.ndarray,
    runs: int,
    samples: int,
    between_cv: float,
    within_cv: float,
) -> np.ndarray:
    """Samples (reps, rows, runs, samples) around level (reps, rows).

    Every run is off its row's level by a normal term on the log scale (sd between_cv:
    what a process is dealt); its samples add right-skewed noise (the absolute value of
    a normal, sd within_cv), a tenth of them three times larger (preemptions).
    """
    reps, rows = level.shape
    run_level = rng.normal(0.0, between_cv, (reps, rows, runs, 1))
    noise = np.abs(rng.normal(0.0, within_cv, (reps, rows, runs, samples)))
    noise *= np.where(rng.random(noise.shape) < 0.1, 3.0, 1.0)
    return np.asarray(level[:, :, None, None] * np.exp(run_level + noise))


def simulate_comparisons(
    seed: int,
    reps: int,
    runs: int,
    samples: int,
    between_cv: float,
    within_cv: float,
    head_shift: Sequence[float],
    policy: ComparePolicy | None = None,
) -> list[list[Judgement]]:
    """reps whole comparisons, one row per entry of head_shift (head's true ratio)."""
    policy = policy or ComparePolicy()
    rng = np.random.default_rng(seed)
    rows = len(head_shift)
    level = np.exp(rng.uniform(np.log(0.05), np.log(5.0), (reps, rows)))  # ms
    shift = np.asarray(head_shift, dtype=np.float64)[None, :]
    base = simulate_side(rng, level, runs, samples, between_cv, within_cv)
    head = simulate_side(rng, level * shift, runs, samples, between_cv, within_cv)
    # per run: log median and within-run variance, vectorised over every run at once
    logs = np.log(np.median(np.stack([base, head]), axis=-1))  # (2, reps, rows, runs)
    within = log_median_variances(np.stack([base, head])).mean(axis=(0, 3))  # (reps, rows)
    n = runs * samples
    out = []
    for r in range(reps):
        evidence = [
            replace(
                evidence_from_logs(logs[0, r, i], logs[1, r, i], float(within[r, i]), n, n, policy),
                runs=(tuple(base[r, i]), tuple(head[r, i])),  # for the bootstrap, if needed
            )
            for i in range(rows)
        ]
        out.append(judge(evidence, policy))
    return out


def main(argv: Sequence[str]) -> None:
    """python -m tests.analysis.simulate RUNS BETWEEN_CV: one line of the rates table.

    python -m tests.analysis.simulate lockstep PAIRS LOTTERY_CV: the same for lockstep pairs.
    """
    from invbench.analysis.verdicts import Verdict

    if argv[0] == "lockstep":
        lockstep_line(int(argv[1]), float(argv[2]))
        return
    runs, cv = int(argv[0]), float(argv[1])
    changes = {Verdict.SLOWER, Verdict.FASTER}
    null = simulate_comparisons(100 + runs, 400, runs, 50, cv, 0.05, [1.0] * 20)
    alarms = sum(any(j.verdict in changes for j in rep) for rep in null)
    same = sum(j.verdict is Verdict.SAME for rep in null for j in rep)
    alt = simulate_comparisons(200 + runs, 200, runs, 50, cv, 0.05, [1.1] + [1.0] * 19)
    called = sum(rep[0].verdict is Verdict.SLOWER for rep in alt)
    print(f"runs={runs} cv={cv}: null comparisons with any change {alarms}/400, "
          f"rows same {same}/8000; 10% called {called}/200")  # fmt: skip


def simulate_lockstep_pair(
    rng: np.random.Generator,
    level: float,
    shift: float,
    rounds: int = 40,
    per_round: int = 10,
    lottery_cv: float = 0.01,
    within_cv: float = 0.05,
    slow: float = 1.8,
    switch: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """The samples (in time order) of one lockstep pair of runs, base and head.

    The machine flips between a fast and a slow state (slow: that many times slower; a
    flip before each half-round with probability switch/2), which both sides see as it
    comes, round after round; each process is off its level by lottery_cv (log sd: what a
    process is dealt) and every sample adds right-skewed noise (half-normal within_cv, a
    tenth of the samples three times more).
    """
    halves = 2 * rounds  # half-rounds in time order: base, head, head, base, ...
    flips = rng.random(halves) < switch / 2
    state = (bool(rng.random() < 0.5) + np.cumsum(flips)) % 2 == 1
    side = np.array([(0, 1) if r % 2 == 0 else (1, 0) for r in range(rounds)]).ravel()
    noise = np.abs(rng.normal(0.0, within_cv, (halves, per_round)))
    noise *= np.where(rng.random(noise.shape) < 0.1, 3.0, 1.0)
    dealt = np.exp(rng.normal(0.0, lottery_cv, 2))
    true = level * np.where(side == 1, shift, 1.0) * dealt[side]
    samples = (true * np.where(state, slow, 1.0))[:, None] * np.exp(noise)
    return samples[side == 0].ravel(), samples[side == 1].ravel()


def simulate_lockstep_comparisons(
    seed: int,
    reps: int,
    pairs: int,
    head_shift: Sequence[float],
    policy: ComparePolicy | None = None,
    **noise: float,
) -> list[list[Judgement]]:
    """reps whole lockstep comparisons (pairs pairs a row), judged as `ab` judges them."""
    from invbench.analysis.verdicts import run_evidence

    policy = policy or ComparePolicy()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        evidence = []
        for shift in head_shift:
            level = float(np.exp(rng.uniform(np.log(0.05), np.log(5.0))))
            runs = [simulate_lockstep_pair(rng, level, shift, **noise) for _ in range(pairs)]  # type: ignore[arg-type]
            evidence.append(
                run_evidence(
                    [b for b, _ in runs],
                    [h for _, h in runs],
                    policy,
                    bootstrap=False,
                    paired=True,
                )
            )
        out.append(judge(evidence, policy))
    return out


def lockstep_line(pairs: int, lottery: float) -> None:
    from invbench.analysis.verdicts import Verdict

    changes = {Verdict.SLOWER, Verdict.FASTER}
    null = simulate_lockstep_comparisons(300 + pairs, 300, pairs, [1.0] * 20, lottery_cv=lottery)
    alarms = sum(any(j.verdict in changes for j in rep) for rep in null)
    same = sum(j.verdict is Verdict.SAME for rep in null for j in rep)
    line = f"lockstep pairs={pairs} lottery={lottery}: null with any change {alarms}/300, "
    line += f"rows same {same}/6000"
    for shift, reps in ((1.1, 200), (1.05, 200)):
        alt = simulate_lockstep_comparisons(
            400 + pairs, reps, pairs, [shift] + [1.0] * 19, lottery_cv=lottery
        )
        called = sum(rep[0].verdict is Verdict.SLOWER for rep in alt)
        line += f"; {shift - 1:.0%} called {called}/{reps}"
    print(line)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
