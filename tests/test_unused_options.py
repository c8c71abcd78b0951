"""An option that is read only under a switch (``needs`` on its field, llm_jepa.options) and is set
away from its default while that switch is off would be accepted and do nothing: the training CLI,
YAML configs and the TRL config refuse it in one line naming the option and its switch, before
anything is written. Defaults never trigger it."""

import pytest

from llm_jepa import config as config_mod
from llm_jepa.config import ConfigError, load_config
from llm_jepa.runs import SETTINGS

OFF = [  # (flags, the option, its switch)
    (["--stp_times", "3"], "stp_times", "stp_lambda"),
    (["--stp_sampling", "uniform"], "stp_sampling", "stp_lambda"),
    (["--stp_variant", "curvature"], "stp_variant", "stp_lambda"),
    (["--stp_predictor", "true"], "stp_predictor", "stp_lambda"),
    (["--distance", "cosine", "--temperature", "0.1"], "temperature", "distance"),
    (["--distance", "l2", "--infonce_gather", "true"], "infonce_gather", "distance"),
    (["--accuracy_examples", "5"], "accuracy_examples", "accuracy_every_steps"),
    (["--accuracy_task", "regex"], "accuracy_task", "accuracy_every_steps"),
]


@pytest.mark.parametrize("flags,name,switch", OFF, ids=[o[1] for o in OFF])
def test_an_option_its_switch_leaves_unread_is_refused_naming_both(tmp_path, flags, name, switch):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["--output_dir", str(tmp_path / "o"), *flags])
    message = str(e.value)
    assert "\n" not in message and f"--{name} " in message and f"--{switch} " in message and "does nothing" in message


@pytest.mark.parametrize("flags", [
    [], ["--stp_times", "1"],  # a default given explicitly does nothing different: accepted
    ["--stp_lambda", "0.1", "--stp_times", "3", "--stp_sampling", "uniform"],
    ["--distance", "infonce", "--temperature", "0.1", "--infonce_gather", "true"],
    ["--accuracy_every_steps", "2", "--accuracy_examples", "5", "--accuracy_task", "regex"],
])
def test_defaults_and_options_whose_switch_is_on_are_accepted(tmp_path, flags):
    cfg = load_config(None, ["--output_dir", str(tmp_path / "o"), *flags])
    assert config_mod.unused_options(cfg) == []


def test_every_switch_is_an_option_and_no_default_trips_it(tmp_path):
    cfg = load_config(None, ["--output_dir", str(tmp_path / "o")])
    declared = {f.name: config_mod._metadata(f)["needs"] for f in config_mod.option_fields()
                if "needs" in config_mod._metadata(f)}
    assert {"stp_times", "stp_layer", "temperature", "infonce_gather", "accuracy_examples", "accuracy_task"} <= set(declared)
    assert "stp_lambda" not in declared  # the switch itself
    names = {f.name for f in config_mod.option_fields()}
    assert {switch for switch, _, _ in declared.values()} <= names
    assert config_mod.unused_options(cfg) == []


def test_the_cli_and_a_yaml_config_refuse_it_before_anything_is_written(tmp_path, capsys):
    from llm_jepa.cli import main

    out = tmp_path / "run"
    code = main(["train", "--model", "m", "--data", "d.jsonl", "--output_dir", str(out), "--stp_times", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--stp_times 3 does nothing with --stp_lambda 0.0" in err[0]
    assert not out.exists()
    yaml = tmp_path / "c.yaml"
    yaml.write_text(f"output_dir: {out}\ndistance: mse\ntemperature: 0.2\n")
    with pytest.raises(ConfigError, match="--temperature 0.2 does nothing with --distance mse"):
        load_config(yaml)
    code = main(["train", "--config", str(yaml)])
    assert code == 2 and "--temperature 0.2 does nothing" in capsys.readouterr().err and not out.exists()


def test_the_trl_config_runs_the_same_check(tmp_path):
    from llm_jepa.trl import JepaSFTConfig

    with pytest.raises(ConfigError, match="--stp_times 3 does nothing with --stp_lambda"):
        JepaSFTConfig(output_dir=str(tmp_path), use_cpu=True, stp_times=3)
    with pytest.raises(ConfigError, match="--temperature 0.5 does nothing with --distance cosine"):
        JepaSFTConfig(output_dir=str(tmp_path), use_cpu=True, temperature=0.5)
    ok = JepaSFTConfig(output_dir=str(tmp_path), use_cpu=True, stp_lambda=0.1, stp_times=3,
                       distance="infonce", temperature=0.5)
    assert ok.stp_times == 3 and ok.temperature == 0.5


def test_view_pair_with_regular_is_used_so_it_is_accepted(tmp_path, recwarn):
    """Not a no-op: --regular still records view_pair as a run setting that eval's similarity and
    reranking, embed and analyze read from the trained run (and --monitor_views_every builds views)."""
    cfg = load_config(None, ["--output_dir", str(tmp_path / "o"), "--regular", "true", "--view_pair", "0"])
    assert cfg.view_pair == 0 and "view_pair" in SETTINGS
    assert "view_pair" not in config_mod.regular_ignores(cfg)
    assert not [w for w in recwarn if "view_pair" in str(w.message)]
