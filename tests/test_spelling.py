"""Every command accepts --snake_case and --kebab-case for each of its options."""

import pytest

from llm_jepa.cli import COMMANDS, build_parser
from llm_jepa.config import load_config


def _parse(*argv):
    args, rest = build_parser().parse_known_args(list(argv))
    return args, rest


@pytest.mark.parametrize("spelling", ["--batch-size", "--batch_size"])
def test_eval_takes_both_spellings(spelling):
    args, rest = _parse("eval", "--model", "m", "--data", "d", "--output", "o", spelling, "3", "--plain_text",
                        "--max_new_tokens=7", "--no_similarity")
    assert rest == [] and args.batch_size == 3 and args.plain_text and args.max_new_tokens == 7
    assert args.similarity is False


def test_every_command_is_registered_and_every_option_has_its_other_spelling():
    from llm_jepa.spelling import respell

    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "train" in a.choices)
    assert set(sub.choices) == set(COMMANDS)
    for name, p in sub.choices.items():
        for option in p._option_string_actions:
            body = option[2:]
            if option.startswith("--") and ("_" in body or "-" in body):
                other = "--" + (body.replace("_", "-") if "_" in body else body.replace("-", "_"))
                if other not in p._option_string_actions:
                    assert respell(p, [other, "1"]) == [option, "1"], (name, option)


@pytest.mark.parametrize("argv", [
    ["--eval-data", "e.jsonl", "--plain-text", "true"],
    ["--eval_data", "e.jsonl", "--plain_text", "true"],
])
def test_train_options_take_both_spellings(argv):
    cfg = load_config(None, ["--output-dir", "x", *argv])
    assert cfg.eval_file == "e.jsonl" and cfg.plain_text is True


def test_an_unknown_option_is_still_refused():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--model", "m", "--data", "d", "--output", "o", "--batch_sizes", "3"])


def test_public_names_are_accepted_wherever_their_option_is():
    # red team: train and inspect took --k (PUBLIC_NAMES), eval and analyze only --predictors
    from llm_jepa.config import PUBLIC_NAMES

    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "train" in a.choices)
    for name, p in sub.choices.items():
        for field, public in PUBLIC_NAMES.items():
            takes_field = any(f"--{s}" in p._option_string_actions for s in (field, field.replace("_", "-")))
            if takes_field:
                assert f"--{public}" in p._option_string_actions, (name, field)
    args, _ = _parse("eval", "--model", "m", "--data", "d", "--output", "o", "--k", "2")
    assert args.predictors == 2
    args, _ = _parse("analyze", "--model", "a", "--model", "b", "--data", "d", "--output", "o", "--k", "1", "--k", "3")
    assert args.predictors == [1, 3]


@pytest.mark.parametrize("command", [
    ["train", "--model", "m", "--data", "d.jsonl"],
    ["eval", "--model", "m", "--data", "d.jsonl"],
    ["sweep", "s.yaml"],
])
@pytest.mark.parametrize("given", [["--output", "A", "--output_dir", "B"], ["--output_dir=A", "--output-dir", "A",
                                                                            "--output", "B"]])
def test_two_aliases_of_the_output_with_different_values_are_refused(tmp_path, capsys, monkeypatch, command, given):
    """--output A --output_dir B once kept B silently (argparse: the last one wins)."""
    from llm_jepa.cli import main

    monkeypatch.chdir(tmp_path)
    code = main([*command, *given])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert " A and --output" in err[0] and " B name the same option with different values" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_aliases_that_agree_or_one_name_repeated_are_accepted(tmp_path):
    from llm_jepa.config import ConfigError
    from llm_jepa.spelling import conflicting_aliases

    assert conflicting_aliases(["--output", "A", "--output_dir", "A"]) is None
    assert conflicting_aliases(["--output", "runs/a", "--output_dir=./runs/a/"]) is None  # one folder
    assert conflicting_aliases(["--output", "runs/a", "--output_dir", "runs/b"]) is not None
    assert conflicting_aliases(["--output_dir", "A", "--output_dir", "B"]) is None  # argparse's own rule
    cfg = load_config(None, ["--output", str(tmp_path), "--output_dir", str(tmp_path)])
    assert cfg.output_dir == str(tmp_path)
    with pytest.raises(ConfigError, match=r"--output_dir A and --output B name the same option"):
        load_config(None, ["--output_dir", "A", "--output", "B"])
