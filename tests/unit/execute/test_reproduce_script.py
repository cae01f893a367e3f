"""reproduce.sh: the step's own command lines (Step.by_hand) run with --cli, navbuild's step otherwise."""

from __future__ import annotations

import subprocess
from pathlib import Path

from navbuild.execute.isolation import write_job


def test_a_step_with_command_lines_gets_a_cli_branch_that_runs_them_into_the_output_folder(tmp_path: Path) -> None:
    write_job(tmp_path, "t", "Step", {}, {}, tmp_path, by_hand=('echo made > "$out/model.txt"',))
    script = tmp_path / "reproduce.sh"
    assert "[OUTPUT_DIR [--cli]]" in script.read_text()
    subprocess.run(["sh", str(script), str(tmp_path / "cli"), "--cli"], check=True, timeout=30,
                   stdin=subprocess.DEVNULL)
    assert (tmp_path / "cli" / "model.txt").read_text() == "made\n"


def test_a_failing_command_line_fails_the_script(tmp_path: Path) -> None:
    write_job(tmp_path, "t", "Step", {}, {}, tmp_path, by_hand=("false", 'echo never > "$out/x"'))
    done = subprocess.run(["sh", str(tmp_path / "reproduce.sh"), str(tmp_path / "cli"), "--cli"], timeout=30,
                          stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and not (tmp_path / "cli" / "x").exists()


def test_a_step_without_command_lines_keeps_the_plain_script(tmp_path: Path) -> None:
    write_job(tmp_path, "t", "Step", {}, {}, tmp_path)
    text = (tmp_path / "reproduce.sh").read_text()
    assert "--cli" not in text and "# Usage: sh reproduce.sh [OUTPUT_DIR]   (default: a new temporary folder)" in text
