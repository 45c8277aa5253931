"""Every change Switchboard makes to Faust, and every use of a Faust private, in one package.

docs/faust.md says what each fix is for; ``install_all`` checks the installed Faust and then
installs them, once, before the worker starts.
"""

from __future__ import annotations

from core.settings import Settings
from streams.faust_fixes.check import FaustMismatch, verify

__all__ = ["FaustMismatch", "install_all"]


def install_all(settings: Settings) -> None:
    """Check the installed Faust (``FaustMismatch`` names every difference), then patch it."""
    verify()
    # Imported after the check, so that a Faust lacking what they import is reported by the
    # check, with everything else it lacks, rather than by an ImportError.
    from streams.faust_fixes import changelog, flow_resume, intake, read_offsets, skips

    if settings.worker_inline_intake:
        intake.install()
    changelog.install()
    read_offsets.install()
    skips.install()
    flow_resume.install()
