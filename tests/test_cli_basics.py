"""What the command answers before any work: help when bare, its version, a quiet end when the
reader of its output has gone."""

from __future__ import annotations

import subprocess
import sys

from sweeplab import __version__
from sweeplab.cli import main


def test_bare_sweeplab_prints_its_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sweeplab") and "sweeplab init DIR" in out


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as done:  # argparse's version action exits after printing
        assert done.code == 0
    assert capsys.readouterr().out.strip() == f"sweeplab {__version__}"


def test_a_closed_pipe_ends_the_command_quietly():
    """`sweeplab ... | head`: the reader left; no 'Broken pipe' error, no traceback, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeplab.cli", "train", "--cfg", "all"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # before it writes a byte
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert err == ""
