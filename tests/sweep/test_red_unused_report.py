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


def test_an_unread_option_from_the_base_config_is_named_as_the_base_configs(tmp_path):
    """It was said to come "from its cell" (the baseline's {regular, stp_lambda: 0}), with advice to
    set it only in the cells that use it, which the sweep file already did."""
    import pytest

    from llm_jepa.sweep.grid import SweepError, check_keys, load_sweep

    (tmp_path / "train.yaml").write_text("output_dir: x\nmax_steps: 4\nstp_lambda: 0.02\nstp_times: 4\n")
    path = tmp_path / "sweep.yaml"
    path.write_text("base: train.yaml\ngrid: {k: [1, 2]}\nbaseline: {regular: true, stp_lambda: 0.0}\nseeds: [82]\n")
    with pytest.raises(SweepError, match=r"cell baseline: stp_times 4 \(from the base config .*train\.yaml\).*"
                                         r"give this cell stp_times: 1 \(its default\)"):
        check_keys(load_sweep(path))
    path.write_text(path.read_text().replace("stp_lambda: 0.0}", "stp_lambda: 0.0, stp_times: 1}"))
    check_keys(load_sweep(path))  # as the advice says: the cell at the default is no unread option


def test_a_lambda_written_2e_2_in_a_sweep_file_is_checked_as_the_number_train_reads(tmp_path):
    """YAML reads ``2e-2`` as text (training's parser makes it 0.02): the unread-option check compared
    it with 0 and crashed with a TypeError, where the file was accepted before the check."""
    import pytest

    from llm_jepa.sweep.grid import SweepError, check_keys, load_sweep

    (tmp_path / "train.yaml").write_text("output_dir: x\nmax_steps: 4\nstp_lambda: 1e-2\n")
    path = tmp_path / "sweep.yaml"
    path.write_text("base: train.yaml\ngrid: {stp_lambda: [0.0, 2e-2]}\nseeds: [82]\n")
    assert load_sweep(path).grid["stp_lambda"] == [0.0, "2e-2"]
    check_keys(load_sweep(path))
    path.write_text("base: train.yaml\ngrid: {stp_lambda: [2e-2, 3e-2]}\nfixed: {stp_times: 4}\n"
                    "baseline: {regular: true, stp_lambda: 0e0}\nseeds: [82]\n")
    with pytest.raises(SweepError, match="cell baseline: stp_times 4 .* with stp_lambda 0.0"):
        check_keys(load_sweep(path))
