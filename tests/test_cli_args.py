"""The CLI generator (lemo.utils.argparser): a flag per config field, chosen by the field's type, with the
exceptions written as `Annotated[T, Flag(...)]`; every command's flags carry their field's docstring."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from lemo.cli.__main__ import COMMANDS
from lemo.config import BenchConfig, FinetuneConfig, Flag, LoraSettings
from lemo.config.flags import layer_set, per_layer
from lemo.utils.argparser import add_flags, build_parser, config_from_args


def _shout(text: str) -> str:
    if text != text.lower():
        raise ValueError(f"{text!r}: write it in lower case, e.g. {text.lower()}")
    return text.upper()


@dataclass
class _Section:
    size: int = 2
    """How big."""
    on: bool = False


@dataclass
class _Config:
    count: int = 1
    """A count."""
    rate: float = 0.5
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    flag: bool = True
    sizes: list[int] = field(default_factory=lambda: [1])
    pair: tuple[float, float] = (0.9, 0.95)
    limit: int | None = None
    word: Annotated[str, Flag(parse=_shout, names=("--wd",), metavar="W", help="Shouted.")] = "A"
    secret: Annotated[int, Flag(hidden=True)] = 0
    left: Annotated[str | None, Flag(group="side")] = None
    right: Annotated[str | None, Flag(group="side")] = None
    section: _Section = field(default_factory=_Section)
    flat: Annotated[_Section, Flag(prefix="flat-")] = field(default_factory=_Section)


def _parser() -> argparse.ArgumentParser:
    return add_flags(argparse.ArgumentParser(prog="t"), _Config)


def _parse(*argv: str) -> dict:
    return vars(_parser().parse_args(list(argv)))


def test_a_fields_type_makes_its_flag():
    ns = _parse(
        "--count", "3", "--rate", "0.25", "--name", "y", "--mode", "b", "--no-flag", "--sizes", "4", "5",
        "--pair", "0.8", "0.9", "--limit", "7", "--section-size", "9", "--section-on", "--flat-size", "4",
    )  # fmt: skip
    assert ns == {
        "count": 3, "rate": 0.25, "name": "y", "mode": "b", "flag": False, "sizes": [4, 5], "pair": [0.8, 0.9],
        "limit": 7, "section.size": 9, "section.on": True, "flat.size": 4,
    }  # fmt: skip
    assert _parse() == {}  # only what was given: the defaults come from the dataclass (or the YAML file)


def test_flag_metadata_names_parses_hides_and_groups(capsys):
    assert _parse("--wd", "abc") == {"word": "ABC"} == _parse("--word", "abc")
    assert _parse("--secret", "2") == {"secret": 2}
    with pytest.raises(SystemExit):
        _parse("--word", "Abc")
    assert "argument --word/--wd: 'Abc': write it in lower case, e.g. abc" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse("--left", "l", "--right", "r")
    assert "not allowed with argument" in capsys.readouterr().err
    text = _parser().format_help()
    assert "--word W, --wd W" in text and "Shouted. (default: A)" in text and "--secret" not in text
    assert "A count. (default: 1)" in text and "--left LEFT | --right RIGHT" in text


def test_a_type_without_a_flag_rule_is_refused_when_the_parser_is_built():
    @dataclass
    class Ambiguous:
        either: int | str = 0

    with pytest.raises(TypeError, match="needs Annotated"):
        add_flags(argparse.ArgumentParser(), Ambiguous)


def test_choices_from_above_the_config_layer_are_checked_and_listed(capsys):
    parser = add_flags(argparse.ArgumentParser(), _Config, choices={"name": ["x", "y"]})
    assert "Choices: x, y. (default: x)" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "z"])
    assert "invalid choice: 'z'" in capsys.readouterr().err


def test_per_layer_values_and_layer_sets():
    assert per_layer("0.4") == 0.4 and per_layer("0.5,0.4,") == [0.5, 0.4]
    assert layer_set("auto") == "auto" and layer_set("10,11") == [10, 11]
    assert layer_set("15-18") == [15, 16, 17, 18] and layer_set("1, 3-4") == [1, 3, 4]
    for bad in ("3-", "5-3", "a-b", "-1"):
        with pytest.raises(ValueError, match="ranges such as"):
            layer_set(bad)
    for parse, text in ((per_layer, "a"), (per_layer, ","), (layer_set, "1-x")):
        with pytest.raises(ValueError):
            parse(text)


def test_bad_values_are_usage_errors_that_name_the_fix(capsys):
    parser = build_parser(argparse.ArgumentParser(prog="lemo finetune"), FinetuneConfig)
    for flag, word, message in (
        ("--keep-ratio", "half", "'half' is not a number or a comma-separated list of numbers"),
        (
            "--sparse-layers",
            "top",
            "'top': use auto, upper, all, none, or layer indices and ranges such as 10,11,12 or 15-30",
        ),
        ("--steps", "ten", "invalid int value: 'ten'"),
        ("--mlp", "wide", "invalid choice: 'wide'"),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args([flag, word])
        assert f"argument {flag}: {message}" in capsys.readouterr().err


def test_yaml_config_and_flags_merge(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "seq_len: 2048\nlora: {rank: 4}\nsparsity: {keep_ratio: 0.3, mlp: tokens}\n"
    )
    parser = build_parser(argparse.ArgumentParser(), FinetuneConfig)
    ns = parser.parse_args(
        ["--config", str(tmp_path / "c.yaml"), "--keep-ratio", "0.5,0.6", "--lora-alpha", "4"]
    )
    cfg = config_from_args(FinetuneConfig, ns)
    assert (cfg.seq_len, cfg.lora.rank, cfg.lora.alpha) == (2048, 4, 4.0)
    assert cfg.sparsity.keep_ratio == [0.5, 0.6] and cfg.sparsity.mlp == "tokens"


def test_lora_targets_comma_separated():
    parser = build_parser(argparse.ArgumentParser(), FinetuneConfig)
    cfg = config_from_args(FinetuneConfig, parser.parse_args(["--lora-targets", "q_proj,v_proj"]))
    assert cfg.lora.targets == ["q_proj", "v_proj"] and isinstance(cfg.lora, LoraSettings)


@pytest.mark.parametrize("command", [*sorted(COMMANDS), "bench"])
def test_every_flag_of_every_command_explains_itself(command):
    parser = build_parser(
        argparse.ArgumentParser(), COMMANDS[command][0] if command in COMMANDS else BenchConfig
    )
    bare = [a.option_strings for a in parser._actions if not (a.help or "").split("(default:")[0].strip()]
    assert not bare, f"lemo {command}: flags without a field docstring: {bare}"
