"""The demo's verdict lines say what the numbers mean, collapse included."""

from llm_jepa.demo.report import _verdicts


def _arm(acc, ci, collapsed):
    message = "COLLAPSED: mean cosine 1.000" if collapsed else "not collapsed"
    return {"summary": {"accuracy": acc, "ci95": ci},
            "diagnostics": {"code_collapse": {"collapsed": collapsed, "message": message}}}


def test_collapsed_jepa_points_to_the_anti_collapse_arms():
    lines = _verdicts({"arms": {"baseline": _arm(0.9, (0.87, 0.93), False), "jepa": _arm(0.7, (0.65, 0.75), True)}})
    assert any("--arms baseline jepa jepa_infonce jepa_sigreg" in line for line in lines)
    # without the arms' predictions there is no paired test to run, and no verdict is claimed
    # (the McNemar verdict: tests/demo/test_table.py)
    assert "- JEPA vs baseline exact match: 0.700 vs 0.900" in lines


def test_no_hint_when_nothing_collapsed_or_the_variants_ran():
    healthy = {"baseline": _arm(0.9, (0.8, 0.95), False), "jepa": _arm(0.88, (0.8, 0.93), False)}
    assert not any("--arms" in line for line in _verdicts({"arms": healthy}))
    assert not any("overlap" in line for line in _verdicts({"arms": healthy}))
    ran = {**healthy, "jepa": _arm(0.7, (0.6, 0.8), True), "jepa_sigreg": _arm(0.1, (0.05, 0.2), False)}
    assert not any("--arms" in line for line in _verdicts({"arms": ran}))
