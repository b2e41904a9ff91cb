"""The protocol client of bench/sessions.py receives real pages: the map and the key figures of the view.

The benchmark times sessions that speak Streamlit's websocket protocol without a browser; this test
serves the demo store and checks that such a session gets the page a browser would (the map
component, its layers, and the figures above the map equal to those read from the store), alone and
two at once, so that the benchmark cannot silently time an empty or failed page.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from essmap import store
from essmap.domain.formatting import format_number
from essmap.domain.selection import Selection
from essmap.store import queries

#: Each test starts its own Streamlit servers (10-20 s, most of it their start): it checks the process
#: that serves sessions, so `make test` runs it and `make test-unit` leaves it out.
pytestmark = pytest.mark.slow


def expected_figures(db_path: Path, departement: str) -> dict[str, str]:
    """The key figures of a département's view, read from the store (labels as the dashboard shows them)."""
    con = store.connect(db_path)
    try:
        selection = Selection(departements=(departement,))
        return {
            "Établissements ESS (données simulées)": format_number(
                len(queries.read_points(con, "etablissements", selection, columns=["siret"]))),
            "Tiers-lieux": format_number(len(queries.read_points(con, "tiers_lieux", selection, columns=["nom"]))),
            "QPV": format_number(len(queries.qpv_coverage(con, selection, radius_m=1000))),
            "Unités cartographiées (commune)": format_number(con.execute(
                "SELECT count(*) FROM communes WHERE code_departement = ? AND type_commune = 'COM'",
                [departement]).fetchone()[0]),
        }
    finally:
        con.close()


def test_protocol_sessions_receive_the_map_and_the_figures_of_their_view(sessions, demo_db, tmp_path):
    with sessions.StreamlitServer(demo_db, tmp_path / "streamlit.log", startup_timeout_s=180) as server:
        alone = sessions.run_round(server, ["04"], "alone")
        together = sessions.run_round(server, ["05", "06"], "at once")
    for found in (*alone.sessions, *together.sessions):
        departement = found.query.removeprefix("departements=")
        assert found.metrics == expected_figures(demo_db, departement), found.query
        assert found.map_messages >= 1 and found.map_message_bytes > 10_000, found
        assert found.layers_bytes > 0, found  # the map names published layers, and they were served
        assert 0 < found.map_message_s <= found.finished_s, found
    assert alone.server_cpu_s > 0
    assert together.start_spread_s < 1.0


def test_sessions_spread_over_replicas_each_receive_their_own_view(sessions, demo_db, tmp_path):
    """``--replicas``: session i on server i mod N, every one its own page, every server's CPU counted."""
    with sessions.StreamlitServer(demo_db, tmp_path / "first.log", startup_timeout_s=180) as first, \
            sessions.StreamlitServer(demo_db, tmp_path / "second.log", startup_timeout_s=180) as second:
        second_before = sessions.server_cpu_s(second.process.pid)
        found = sessions.run_round([first, second], ["04", "05"], "2 replicas")
        second_spent = sessions.server_cpu_s(second.process.pid) - second_before
    assert found.replicas == 2
    assert second_spent > 0.05  # the second session's script ran on the second server
    assert found.server_cpu_s >= second_spent
    for session in found.sessions:
        assert session.metrics == expected_figures(demo_db, session.query.removeprefix("departements=")), session.query
        assert session.layers_bytes > 0
