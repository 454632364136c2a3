"""env.sh puts this checkout's build on the paths from every shell the README
and the Makefile source it from."""
from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from conftest import REPO

PRINT = 'printf "%s\\n" "$RLOSS_CAFFE" "$PATH"'


def source(shell: str, cwd, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([shell, "-c", f". {shlex.quote(path)} && {PRINT}"], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def check(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr  # no "Bad substitution", no missing build
    caffe, path = res.stdout.splitlines()
    assert caffe == str((REPO / ".caffe").resolve())
    assert str(REPO / "bin") in path.split(":")


def test_plain_sh_from_the_root_as_make_does():
    # make runs a recipe as `/bin/sh -c` (dash on Debian): $0 is "/bin/sh".
    check(source("/bin/sh", REPO, "./env.sh"))


def test_bash_from_another_directory(tmp_path):
    check(source("bash", tmp_path, str(REPO / "env.sh")))


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_from_another_directory(tmp_path):
    check(source("zsh", tmp_path, str(REPO / "env.sh")))
