"""Help that teaches (issue 9 item 6): examples, exit codes, what FILE is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
EXIT_CODES = (
    "0 success",
    "1 a render, provider or stitch failure",
    "2 usage error or invalid storyboard",
    "3 refused by the budget",
    "130 interrupted",
)


def _help(*argv: str) -> str:
    result = run_cli(*argv, "--help")
    assert result.code == 0, result.err
    return result.out


def _examples(text: str) -> list[str]:
    """The example command lines of a help text's epilog."""
    tail = text.split("examples:", 1)[1]
    return [line.strip() for line in tail.splitlines() if line.strip().startswith("storyboard ")]


@pytest.mark.parametrize("command", [(), ("validate",), ("plan",), ("render",), ("stitch",)])
def test_help_ends_with_examples_and_exit_codes(command: tuple[str, ...]) -> None:
    text = _help(*command)
    examples = _examples(text)
    assert 2 <= len(examples) <= 4, text
    if command:
        assert all(e.startswith(f"storyboard {command[0]} ") for e in examples)
    codes = text.split("exit codes:", 1)[1]
    assert text.index("examples:") < text.index("exit codes:")
    for code in EXIT_CODES:
        assert code in codes, code


@pytest.mark.parametrize("command", ["plan", "render", "stitch"])
def test_help_examples_are_accepted_by_the_parser(command: str) -> None:
    """Every example parses: a help text never teaches a flag the command refuses."""
    from storyboard.cli import _build_parser

    parser = _build_parser()
    for example in _examples(_help(command)):
        argv = example.split("#")[0].split()[1:]
        parser.parse_args(argv)


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("validate", "one or more storyboard YAML files"),
        ("plan", "a storyboard YAML file"),
        ("render", "a storyboard YAML file"),
        ("stitch", "a storyboard YAML file"),
    ],
)
def test_file_is_described(command: str, words: str) -> None:
    text = _help(command).split("positional arguments:", 1)[1]
    file_line = next(line for line in text.splitlines() if line.strip().startswith("FILE"))
    assert words in file_line


def test_each_command_lists_only_the_flags_it_takes() -> None:
    assert "--jobs" not in _help("plan") and "--jobs" in _help("render")
    assert "--live" not in _help("validate") and "--budget" not in _help("stitch")
    assert "--budget" in _help("plan")


def test_help_in_a_subprocess_is_the_same() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "storyboard", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert "exit codes:" in proc.stdout and "examples:" in proc.stdout
