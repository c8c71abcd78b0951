"""A run saved before options read only under a switch were refused (``stp_times: 4`` with
``stp_lambda: 0``) resumes: the option did nothing then, so its default now is no change."""

import yaml

from llm_jepa.train import train
from tests.test_train import _cfg, ckpt, data  # noqa: F401 (fixtures)


def test_resume_of_a_run_saved_with_an_option_its_switch_left_unread(ckpt, data, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    train(_cfg(ckpt, data, out, "--max_steps", "2", "--save_steps", "2"))
    path = out / "llm_jepa_config.yaml"
    saved = yaml.safe_load(path.read_text())
    assert saved["stp_lambda"] == 0 and saved["distance"] == "cosine"
    # as a run trained before the refusal saved it: these options were accepted and did nothing
    path.write_text(yaml.safe_dump({**saved, "stp_times": 4, "temperature": 0.5}))
    train(_cfg(ckpt, data, out, "--max_steps", "3", "--resume", "true"))  # the same command as its start
