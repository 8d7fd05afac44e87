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


# ------------------------------------------------------------------ one style of subcommand
def test_sweep_start_is_the_default_subcommand_and_options_may_come_first():
    from sweeplab.cli.sweep import with_subcommand

    assert with_subcommand(["sweep", "a=b"]) == ["sweep", "start", "a=b"]
    assert with_subcommand(["sweep"]) == ["sweep", "start"]
    assert with_subcommand(["sweep", "--check", "a=b"]) == ["sweep", "start", "--check", "a=b"]
    assert with_subcommand(["sweep", "resume", "x"]) == ["sweep", "resume", "x"]
    assert with_subcommand(["sweep", "--config-dir", "d", "sync", "x"]) == [
        "sweep",
        "sync",
        "--config-dir",
        "d",
        "x",
    ]
    assert with_subcommand(["sweep", "--help"]) == ["sweep", "--help"]
    assert with_subcommand(["train", "resume"]) == ["train", "resume"]


def test_sweep_cfg_prints_every_section_like_train_cfg_all(capsys):
    assert main(["sweep", "--cfg", "data=digits"]) == 0
    whole = capsys.readouterr().out
    assert main(["sweep", "start", "--cfg", "all", "data=digits"]) == 0
    assert capsys.readouterr().out == whole
    assert main(["train", "--cfg", "all", "data=digits"]) == 0
    assert capsys.readouterr().out == whole
    for section in ("tune:", "search:", "cluster:", "data:"):
        assert f"\n{section}" in "\n" + whole
    assert main(["train", "--cfg", "data=digits"]) == 0
    assert "\ntune:" not in "\n" + capsys.readouterr().out  # a training run does not read it


def test_each_subcommand_has_its_own_help(capsys):
    texts = {}
    for argv in (["services", "up"], ["services", "down"], ["services", "status"], ["sweep", "resume"],
                 ["sweep", "sync"], ["sweep", "start"]):  # fmt: skip
        try:
            main([*argv, "--help"])
        except SystemExit as done:
            assert done.code == 0
        texts[" ".join(argv)] = capsys.readouterr().out
    assert len(set(texts.values())) == len(texts)
    assert (
        texts["services up"].startswith("usage: sweeplab services up") and "--timeout" in texts["services up"]
    )
    assert "--timeout" not in texts["services status"]
    assert (
        texts["sweep resume"].startswith("usage: sweeplab sweep resume")
        and "`latest`" in texts["sweep resume"]
    )


def test_exit_codes_tell_bad_input_from_a_store_out_of_reach(capsys, tmp_path):
    from servers import free_port

    from sweeplab.cli import exits

    assert len({exits.OK, exits.FAILED, exits.USAGE, exits.RUNTIME, exits.INTERNAL, exits.INTERRUPTED}) == 6
    missing = f"tracking.uri=sqlite:///{tmp_path}/nowhere.db"
    assert main(["sweeps", "list", "tracking.epxeriment=x"]) == exits.USAGE
    assert main(["sweeps", "list", missing]) == exits.USAGE  # no store there: a wrong path
    out = capsys.readouterr()
    assert "no tracking store at" in out.err and not (tmp_path / "nowhere.db").exists()
    assert main(["sweeps", "list", f"tracking.uri=http://127.0.0.1:{free_port()}"]) == exits.RUNTIME
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot reach the tracking server") and "\n" not in err


# ------------------------------------------------------------------ shell completion
def completions(words: list[str], script: str) -> list[str]:
    """What bash offers after ``words`` (the last one being completed), with the generated script."""
    line = " ".join(words)
    probe = (
        f"source {script}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n"
        "_shtab_sweeplab\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return sorted(w.strip() for w in done.stdout.split())


def test_bash_completion_offers_commands_subcommands_and_options(tmp_path, capsys):
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "sweeplab.bash"
    script.write_text(capsys.readouterr().out)
    assert completions(["sweeplab", "sw"], str(script)) == ["sweep", "sweeps"]
    assert completions(["sweeplab", "sweeps", ""], str(script)) == [
        "compare",
        "export",
        "list",
        "prune",
        "show",
    ]
    assert completions(["sweeplab", "sweep", "re"], str(script)) == ["resume"]
    assert "--format" in completions(["sweeplab", "sweeps", "list", "--"], str(script))
    assert completions(["sweeplab", "services", "st"], str(script)) == ["status"]


def test_zsh_completion_loads_in_zsh(tmp_path, capsys):
    assert main(["completion", "zsh"]) == 0
    folder = tmp_path / "zfunc"
    folder.mkdir()
    (folder / "_sweeplab").write_text(capsys.readouterr().out)
    probe = (
        f"fpath=({folder} $fpath); autoload -Uz compinit; compinit -u -d {tmp_path}/zcompdump; "
        "print -r -- $_comps[sweeplab]"
    )
    done = subprocess.run(["zsh", "-f", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "_sweeplab"  # zsh found the script and bound it to the command
    syntax = subprocess.run(
        ["zsh", "-n", str(folder / "_sweeplab")], capture_output=True, text=True, timeout=60
    )
    assert syntax.returncode == 0, syntax.stderr
