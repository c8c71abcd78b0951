"""What ``--help`` shows a new user (issue 30): llm-jepa's options first and grouped, each default
said once and readably, every option explained, no internal issue numbers, one name for the output
folder in every command."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields

import pytest

from llm_jepa.cli import build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return dict(parser._subparsers._group_actions[0].choices)


def _help_of(command: str, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) if command not in ("train", "inspect") else _no_exit():
        main([command, "--help"])
    return capsys.readouterr().out


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _entry(help_text: str, option: str) -> str:
    """The lines of one option's entry in a help text."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"\s+{re.escape(option)}\b", line))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\s{2,4}-|\S", lines[i])), len(lines))
    return " ".join(line.strip() for line in lines[start:end])


@pytest.mark.parametrize("command", ["train", "inspect"])
def test_train_help_leads_with_llm_jepa_options_in_groups(command, capsys):
    text = _help_of(command, capsys)
    assert text.startswith(f"usage: llm-jepa {command} [--config FILE]")
    headings = [line[:-1] for line in text.splitlines() if re.fullmatch(r"[A-Za-z].*:", line)]
    order = ["model and data", "objective", "views", "STP", "run"]
    positions = [next(i for i, h in enumerate(headings) if h.startswith(name)) for name in order]
    assert positions == sorted(positions), headings
    assert headings[-1].startswith("every other transformers TrainingArguments option")
    assert text.index("--model_name_or_path") < text.index("--push_to_hub") and \
        text.index("--stp_lambda") < text.index("--hub_token")
    assert "other llm-jepa options" not in text  # every option of ours has its group
    assert "--config FILE" in text and "(or --output)" in text


def test_every_own_training_option_has_a_help_group():
    from transformers import TrainingArguments

    from llm_jepa.config import config_class, help_groups

    grouped = {n for _, names in help_groups() for n in names}
    own = {f.name for f in fields(config_class()) if f.init and not f.name.startswith("_")} - \
        {f.name for f in fields(TrainingArguments)}
    assert own - grouped == set()
    assert {"stp_lambda", "vicreg_weight", "jepa_lambda", "output_dir"} <= grouped  # terms' and Trainer's too


def test_a_fields_group_is_declared_on_it_and_hidden_from_argparse():
    """The group is field metadata, like the roles: HfArgumentParser (and TRL's) never sees it."""
    from llm_jepa.config import JepaConfig
    from llm_jepa.options import VIEWS_GROUP

    meta = JepaConfig.__dataclass_fields__["view_system"].metadata
    assert meta["group"] == VIEWS_GROUP and "group" not in dict(meta) and "group" not in meta.copy()


def test_a_toy_terms_options_get_a_group_of_their_own(monkeypatch, capsys):
    """A term registered without a help group (tests/_toy_term.py) gets a heading named after it, and
    one that names its help_group gets that one: no edit to commands.py or config.py either way."""
    import dataclasses

    from llm_jepa import objective
    from tests import _toy_term

    monkeypatch.setitem(objective.TERMS, "toy", _toy_term.TERM)
    text = _help_of("train", capsys)
    assert "other llm-jepa options" not in text
    headings = [line[:-1] for line in text.splitlines() if re.fullmatch(r"[A-Za-z].*:", line)]
    assert "the toy term" in headings
    toy = text.index("\nthe toy term:")
    assert toy < text.index("--toy_weight") < text.index("\nrun (") and text.index("\nSTP (") < toy
    monkeypatch.setitem(objective.TERMS, "toy", dataclasses.replace(_toy_term.TERM, help_group="toy probe"))
    text = _help_of("train", capsys)
    assert "\ntoy probe:" in text and "\nthe toy term:" not in text


def test_train_help_says_each_default_once_and_readably(capsys):
    text = _help_of("train", capsys)
    assert "(default: None)" not in text and "(default: )" not in text
    threads = _entry(text, "--threads")
    assert threads.count("default") == 1, threads
    assert "(default: '\\n')" in _entry(text, "--separator")


ARGPARSE_COMMANDS = ["demo", "eval", "bench", "analyze", "sweep", "embed", "model"]


@pytest.mark.parametrize("command", ARGPARSE_COMMANDS)
def test_every_option_has_help_and_its_default(command, capsys):
    parser = _subparsers()[command]
    text = _help_of(command, capsys)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.help, f"{command} {name} has no help"
        if action.default not in (None, False) and action.option_strings:
            assert "default" in _entry(text, name), f"{command} {name}: default {action.default!r} not shown"
    assert "(default: None)" not in text and "(default: )" not in text


@pytest.mark.parametrize("command", ["train", "inspect", *ARGPARSE_COMMANDS])
def test_help_names_no_internal_issue(command, capsys):
    assert not re.search(r"\bissue \d+", _help_of(command, capsys), re.I)


def test_command_descriptions_are_capitalised(capsys):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0]
    for choice in sub._choices_actions:
        assert choice.help[0].isupper(), f"{choice.dest}: {choice.help}"
    for name, p in sub.choices.items():
        if p.description:
            assert p.description[0].isupper(), f"{name}: {p.description}"


@pytest.mark.parametrize("spelling", ["--output", "--output_dir", "--output-dir"])
def test_output_folder_has_one_name_everywhere(spelling):
    parser = build_parser()
    for argv, dest in ((["demo", spelling, "x"], "output"),
                       (["eval", "--model", "m", "--data", "d", spelling, "x"], "output"),
                       (["analyze", "--model", "m", "--data", "d", spelling, "x"], "output"),
                       (["sweep", "s.yaml", spelling, "x"], "output"),
                       (["embed", "--model", "m", "--data", "d", "--kind", "text", spelling, "x"], "output")):
        args, rest = parser.parse_known_args(argv)
        assert getattr(args, dest) == "x" and not rest, argv
    from llm_jepa.config import load_config

    assert load_config(None, ["--model", "m", spelling, "out"]).output_dir == "out"
    assert load_config(None, ["--model", "m", f"{spelling}=out2"]).output_dir == "out2"
