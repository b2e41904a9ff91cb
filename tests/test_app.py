"""The Streamlit app runs headless on the demo store (AppTest, no browser)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_app_shows_the_demo_and_labels_synthetic_data(demo_db, monkeypatch):
    monkeypatch.setenv("ESSMAP_DB", str(demo_db))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("données simulées" in w.value for w in at.warning)
    labels = {m.label: m.value for m in at.metric}
    assert labels["Communes"] == "119"  # Bouches-du-Rhône, selected by default
    assert any("données simulées" in label for label in labels)
    dep = at.sidebar.selectbox[0]
    assert dep.value == "13"
    dep.set_value("05").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Communes"] == "162"
