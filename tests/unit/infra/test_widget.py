from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core.settings import Settings
from infra import widget
from infra.widget import build_inputs, ensure_widget_built, lock_hash, needs_build, needs_install


def _source(root: Path) -> Path:
    source = root / "widget"
    (source / "src").mkdir(parents=True)
    (source / "src" / "index.ts").write_text("export {};\n")
    (source / "package.json").write_text("{}\n")
    (source / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    return source


def _installed(source: Path, stamp: Path) -> None:
    (source / "node_modules").mkdir()
    (source / "node_modules" / ".package-lock.json").write_text("{}\n")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(lock_hash(source / "package-lock.json") + "\n")


def _age(path: Path, seconds: int) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 1_000_000_000))


def test_install_follows_the_lock_file(tmp_path: Path) -> None:
    source, stamp = _source(tmp_path), tmp_path / "state" / "stamp"
    assert needs_install(source, stamp)
    _installed(source, stamp)
    assert not needs_install(source, stamp)
    (source / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {}}\n')
    assert needs_install(source, stamp)


def test_install_again_when_node_modules_is_gone(tmp_path: Path) -> None:
    source, stamp = _source(tmp_path), tmp_path / "state" / "stamp"
    _installed(source, stamp)
    (source / "node_modules" / ".package-lock.json").unlink()
    assert needs_install(source, stamp)


def test_build_when_missing_or_older_than_an_input(tmp_path: Path) -> None:
    source = _source(tmp_path)
    output = tmp_path / "out" / "widget.js"
    inputs = build_inputs(source)
    assert source / "src" / "index.ts" in inputs
    assert source / "package-lock.json" in inputs
    assert needs_build(inputs, output)
    output.parent.mkdir()
    output.write_text("built\n")
    for path in inputs:
        _age(path, 10)
    assert not needs_build(inputs, output)
    (source / "src" / "index.ts").write_text("export const changed = 1;\n")
    assert needs_build(inputs, output)


def test_nothing_runs_when_up_to_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    source = _source(tmp_path)
    _installed(source, widget.lock_stamp(settings))
    output = widget.widget_file(settings)
    output.write_text("built\n")
    for path in build_inputs(source):
        _age(path, 10)

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("npm ran although nothing changed")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert ensure_widget_built(settings, print, source=source) == output


def test_the_lock_changing_installs_then_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    source = _source(tmp_path)
    ran: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        ran.append(argv[1:])
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", fake_run)
    ensure_widget_built(settings, print, source=source)
    output = str(widget.widget_file(settings))
    assert ran[0][0] == "ci"
    assert ran[1][-4:] == ["build", "--", "--outfile", output]
    stamp = widget.lock_stamp(settings).read_text().strip()
    assert stamp == lock_hash(source / "package-lock.json")
