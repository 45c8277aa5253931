"""The README documents every setting and both commands a newcomer needs."""

from __future__ import annotations

from core.settings import PROJECT_ROOT, Settings


def test_every_setting_is_in_the_configuration_table() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [
        name for name in Settings.model_fields if f"`SWITCHBOARD_{name.upper()}`" not in readme
    ]
    assert not missing, f"settings missing from README.md: {missing}"


def test_the_two_commands_come_first() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in first_block
    assert "make test" in first_block
