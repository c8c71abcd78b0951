"""A sweep folder made before an option its switch leaves unread was refused (``fixed: {stp_times: 4}``
beside an ``stp_lambda: 0`` cell): ``--report-only`` starts no run, so it still reports every finished
run, the ``stp_lambda: 0`` cells' included (their run keys are the ones they were made under)."""

import json

from llm_jepa import config
from llm_jepa.sweep.cli import sweep

from . import _fake

SWEEP = """\
base: train.yaml
eval_data: test.jsonl
grid:
  stp_lambda: [0.0, 0.02]
fixed: {stp_times: 4}
baseline: {regular: true, stp_lambda: 0.0}
seeds: [82, 23]
"""


def test_report_only_reports_a_sweep_made_before_unused_options_were_refused(tmp_path, monkeypatch):
    (tmp_path / "train.yaml").write_text(f"output_dir: x\nmax_steps: 4\ntrain_file: {tmp_path / 'train.jsonl'}\n")
    (tmp_path / "train.jsonl").write_text(json.dumps({"messages": []}) + "\n")
    (tmp_path / "test.jsonl").write_text(json.dumps({"messages": []}) + "\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    out = tmp_path / "out"
    _fake.CALLS.clear()
    with monkeypatch.context() as m:  # the library before the refusal made these runs
        m.setattr(config, "refuse_unused_options", lambda cfg, names=None: None)
        made = sweep(path, out, run_fn=_fake.fake_run)
    assert len(made["ran"]) == 6 and not made["failed"]
    report = sweep(path, out, report_only=True)  # the default run function's checks, no run
    assert [c["cell_id"] for c in report["cells"]] == ["baseline", "stp_lambda=0.0", "stp_lambda=0.02"]
    assert all(c["n"] == 2 for c in report["cells"])
