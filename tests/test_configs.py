"""The example configs in configs/ stay loadable as the code changes."""

from pathlib import Path

import pytest

from llm_jepa.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("accelerate_*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_parse_with_accelerate(path):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(path))
    assert cfg.num_processes >= 1 and cfg.mixed_precision == "bf16"


def test_training_yaml_loads():
    cfg = load_config(CONFIGS / "train_synth.yaml", ["--bf16", "false"])
    assert (cfg.predictors, cfg.jepa_lambda, cfg.distance) == (1, 1.0, "cosine")
