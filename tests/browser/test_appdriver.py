"""The browser-test driver refuses to run without Debian's chromium, with the command that installs it."""

from __future__ import annotations

from pathlib import Path

import appdriver
import pytest


def test_missing_chromium_fails_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(appdriver, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(appdriver.ChromiumMissing, match=r"make system-deps"):
        appdriver.chromium_path()


@pytest.mark.browser
def test_debian_chromium_is_installed():
    """`make test` installs it (system-deps); the browser tests must not be skipped for lack of it."""
    assert appdriver.chromium_path() == Path("/usr/bin/chromium")
