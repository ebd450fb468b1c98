"""The `mrnn-hil` entry point as a user meets it: installed, with help, and one-line errors."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from hil import cli


def test_console_script_is_installed_and_lists_commands() -> None:
    exe = shutil.which("mrnn-hil")
    assert exe is not None, "the mrnn-hil console script is not on PATH; reinstall the package"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60, check=True)
    for name in cli._load_commands():
        assert name in out.stdout


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-command"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_listed_module_defines_the_command_interface() -> None:
    modules = cli._load_commands()
    for name, module in modules.items():
        assert callable(getattr(module, "add_parser", None)), name
        assert callable(getattr(module, "run", None)), name
