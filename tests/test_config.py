import pytest
import yaml

from llm_jepa.config import ConfigError, load_config, save_config


def test_yaml_then_flags_win(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("model: m\nlambda: 0.5\nk: 3\ndistance: l2\noutput_dir: out\nlearning_rate: 0.001\n")
    cfg = load_config(y, ["--lambda", "2.0", "--alpha", "0.5"])
    assert (cfg.jepa_lambda, cfg.predictors, cfg.distance, cfg.loss_dropout) == (2.0, 3, "l2", 0.5)
    assert cfg.learning_rate == 0.001 and cfg.model_name_or_path == "m"
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert (again.jepa_lambda, again.predictors, again.loss_dropout) == (2.0, 3, 0.5)


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("output_dir: o\nlamda: 1\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown option 'lamda'"):
        load_config(y)


def test_unknown_flag_and_bad_choice_are_errors():
    with pytest.raises(ConfigError):
        load_config(None, ["--output_dir", "o", "--no_such_option", "1"])
    with pytest.raises(ConfigError):
        load_config(None, ["--output_dir", "o", "--distance", "manhattan"])
    with pytest.raises(ValueError, match="predictors"):
        load_config(None, ["--output_dir", "o", "--k", "11"])


@pytest.mark.parametrize("separator", ["->", "-x", " => "])
def test_yaml_and_override_strings_that_start_with_a_dash_are_values(tmp_path, separator):
    # red team: `separator: "->"` in a YAML file (or a sweep override) was read by argparse as an
    # option and failed with "invalid options: --output_dir ..."
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"separator": separator, "plain_text": True}))
    assert load_config(path, ["--output_dir", str(tmp_path / "o")]).separator == separator
    cfg = load_config(None, ["--output_dir", str(tmp_path / "o")], overrides={"separator": separator})
    assert cfg.separator == separator
