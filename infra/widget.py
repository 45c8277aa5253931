"""Build the embeddable chat widget (``web/widget`` → one ``widget.js``) for Nginx to serve.

Idempotent and cheap when nothing changed: ``npm ci`` runs only when ``package-lock.json``
differs from the one last installed (its hash is kept in a stamp file), and ``npm run build``
only when a source, the lock or a build configuration file is newer than the bundle.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path

from core.settings import PROJECT_ROOT, Settings
from infra.services import InstallError, Progress, _run

WIDGET_DIR = PROJECT_ROOT / "web" / "widget"
#: What the bundle is built from, besides everything under ``src/``.
BUILD_FILES = ("package.json", "package-lock.json", "tsconfig.json", "build.mjs")


def widget_file(settings: Settings) -> Path:
    """Where the built bundle lives; Nginx serves it as ``/widget.js``."""
    return settings.state_dir / "widget" / "widget.js"


def lock_stamp(settings: Settings) -> Path:
    return settings.state_dir / "widget" / "package-lock.sha256"


def lock_hash(lock: Path) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def needs_install(source: Path, stamp: Path) -> bool:
    """True unless ``node_modules`` was installed from exactly this ``package-lock.json``."""
    if not (source / "node_modules" / ".package-lock.json").exists() or not stamp.exists():
        return True
    return stamp.read_text().strip() != lock_hash(source / "package-lock.json")


def build_inputs(source: Path) -> list[Path]:
    sources = [path for path in (source / "src").rglob("*") if path.is_file()]
    return sources + [source / name for name in BUILD_FILES if (source / name).exists()]


def needs_build(inputs: Iterable[Path], output: Path) -> bool:
    """True when the bundle is missing or older than any of its inputs."""
    if not output.exists():
        return True
    built = output.stat().st_mtime_ns
    return any(path.stat().st_mtime_ns > built for path in inputs)


def ensure_widget_built(settings: Settings, progress: Progress, source: Path = WIDGET_DIR) -> Path:
    """Install the widget's packages and bundle it when needed; return the bundle's path."""
    output = widget_file(settings)
    stamp = lock_stamp(settings)
    install = needs_install(source, stamp)
    if not install and not needs_build(build_inputs(source), output):
        return output
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError(
            "the chat widget is built with Node.js (>= 18) and npm; put npm on the PATH"
        )
    if install:
        stamp.unlink(missing_ok=True)
        _run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            progress,
            "installing the chat widget's npm packages (npm ci)",
            cwd=source,
        )
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(lock_hash(source / "package-lock.json") + "\n")
    _run(
        [npm, "run", "--silent", "build", "--", "--outfile", str(output)],
        progress,
        f"building the chat widget into {output}",
        cwd=source,
    )
    return output


def typecheck(settings: Settings, progress: Progress, source: Path = WIDGET_DIR) -> None:
    """``tsc --noEmit`` over the widget's sources (``make lint``), building it first if needed."""
    ensure_widget_built(settings, progress, source)
    npm = shutil.which("npm")
    assert npm is not None  # ensure_widget_built refused to go on without it
    _run(
        [npm, "run", "--silent", "typecheck"], progress, "type-checking the chat widget", cwd=source
    )


if __name__ == "__main__":
    typecheck(Settings(), lambda message: print(f"widget: {message}", flush=True))
