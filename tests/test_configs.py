"""The example configs in configs/ stay loadable as the code changes, and every key in the accelerate
files is one accelerate knows (a misspelt nested key would otherwise be ignored silently)."""

from pathlib import Path

import pytest
import yaml

from llm_jepa.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ACCELERATE = sorted(CONFIGS.glob("accelerate_*.yaml"))
ENGINE = {  # file -> (multi_gpu, use_fsdp, use_deepspeed, zero_stage, num_machines)
    "accelerate_ddp.yaml": (True, False, False, None, 1),
    "accelerate_multinode.yaml": (True, False, False, None, 2),
    "accelerate_fsdp2.yaml": (False, True, False, None, 1),
    "accelerate_deepspeed_zero2.yaml": (False, False, True, 2, 1),
    "accelerate_deepspeed_zero3.yaml": (False, False, True, 3, 1),
}


def test_every_accelerate_config_is_listed():
    assert {p.name for p in ACCELERATE} == set(ENGINE)


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_parse_with_accelerate(path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    cfg = ClusterConfig.from_yaml_file(str(path))  # rejects unknown top-level keys
    assert cfg.num_processes >= 1 and cfg.mixed_precision == "bf16"
    parser = launch_command_parser()
    options = {a.dest for a in parser._actions}
    raw = yaml.safe_load(path.read_text())
    # accelerate launch turns each nested key into a launch option (fsdp keys prefixed with fsdp_)
    for key in raw.get("fsdp_config", {}):
        assert (key if key.startswith("fsdp_") else f"fsdp_{key}") in options, key
    for key in raw.get("deepspeed_config", {}):
        assert key in options, key
    args, _, _ = _validate_launch_command(parser.parse_args(["--config_file", str(path), "train.py"]))
    multi_gpu, fsdp, deepspeed, stage, machines = ENGINE[path.name]
    assert (args.multi_gpu, args.use_fsdp, args.use_deepspeed) == (multi_gpu, fsdp, deepspeed)
    assert args.num_machines == machines
    if deepspeed:
        assert int(args.zero_stage) == stage
        # docs/distributed.md: keep it equal to the training option
        train = yaml.safe_load((CONFIGS / "train_synth.yaml").read_text())
        assert int(args.gradient_accumulation_steps) == train.get("gradient_accumulation_steps", 1)
    if machines > 1:
        assert args.main_process_ip and args.main_process_port


def test_fsdp2_config_builds_an_fsdp2_plugin(monkeypatch):
    """The environment accelerate launch derives from the FSDP2 file gives accelerate's plugin FSDP2 with
    decoder-layer wrapping, resharding after forward and a full state dict on save."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    parser = launch_command_parser()
    args, _, _ = _validate_launch_command(
        parser.parse_args(["--config_file", str(CONFIGS / "accelerate_fsdp2.yaml"), "train.py"]))
    for key, value in prepare_multi_gpu_env(args).items():
        if key.startswith(("FSDP_", "ACCELERATE_USE_FSDP")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)


def test_training_yaml_loads():
    cfg = load_config(CONFIGS / "train_synth.yaml", ["--bf16", "false"])
    assert (cfg.predictors, cfg.jepa_lambda, cfg.distance) == (1, 1.0, "cosine")
