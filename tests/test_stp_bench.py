"""The bench's STP strategy: same tokens as plain, its paired step-time ratio checked against 1.05."""

from llm_jepa.bench.report import paired_ratios
from llm_jepa.bench.run import STRATEGIES


def _rec(times, real):
    n = len(times)
    return {"time": times, "real": real, "fwd_bwd": times, "padded": real, "act": [1.0] * n, "mem": [], "views": [False] * n}


def test_stp_is_a_strategy_and_its_ratio_is_paired_per_round():
    assert "stp" in STRATEGIES and "plain" in STRATEGIES
    plain = _rec([1.0, 2.0, 4.0], [100, 100, 100])
    # per round 1.02, 1.02, 1.02 (met); a ratio of medians or means would also say 1.02, but noise that
    # moves both sides of a round alike must cancel: round 3 is slow for both
    r = paired_ratios({"plain": plain, "stp": _rec([1.02, 2.04, 4.08], [100, 100, 100])})
    assert abs(r["stp_vs_plain_step_time"]["measured"] - 1.02) < 1e-9 and r["stp_vs_plain_step_time"]["met"]
    assert r["stp_vs_plain_tokens"]["met"]
    slow = paired_ratios({"plain": plain, "stp": _rec([1.1, 2.2, 4.4], [100, 100, 101])})
    assert not slow["stp_vs_plain_step_time"]["met"] and not slow["stp_vs_plain_tokens"]["met"]
