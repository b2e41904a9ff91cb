"""The command line's table queries without pandas: DuckDB's rows written as the CSV of the frames,
parameters written into the SQL as literals, and the import cost kept out of ``import essmap.cli``."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from typing import Any

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from essmap import store
from essmap.analysis.coverage import qpv_coverage, stored_coverage_rows
from essmap.analysis.indicators import indicator_rows, indicators_by_level
from essmap.domain.selection import Selection
from essmap.render.tables import write_csv_rows, write_table
from essmap.store.connection import sql_with_literals

#: What a table query of the command line must not load (pandas alone costs 0.6 to 1 s).
HEAVY = {"pandas", "numpy", "pyarrow", "geopandas", "shapely", "pyproj", "matplotlib", "mapclassify", "streamlit",
         "folium", "scipy"}


def _loaded_after(code: str) -> list[str]:
    script = code + textwrap.dedent(f"""
        import sys
        print(",".join(sorted({{name.split(".")[0] for name in sys.modules}} & set({sorted(HEAVY)!r}))))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.strip().split(",") if name]


def test_importing_the_cli_loads_no_data_library():
    assert _loaded_after("import essmap.cli") == []


def test_csv_queries_of_the_cli_run_without_pandas(demo_db, tmp_path):
    """Both CSV queries, to a file and to standard output, as whole commands in a fresh interpreter."""
    runs = [
        ["query", "indicators", "--level", "commune", "--out", str(tmp_path / "i.csv")],
        ["query", "indicators", "--level", "epci", "--departement", "84", "--separateur", ";", "--out", "-"],
        ["query", "qpv-radius", "--radius", "1000", "--out", str(tmp_path / "q.csv")],
        ["query", "qpv-radius", "--departement", "13", "--separateur", ";", "--out", "-"],
    ]
    code = textwrap.dedent(f"""
        from click.testing import CliRunner
        from essmap.cli import app
        for args in {runs!r}:
            result = CliRunner().invoke(app, [*args, "--db", {str(demo_db)!r}])
            assert result.exit_code == 0, result.output
    """)
    assert _loaded_after(code) == []
    assert (tmp_path / "i.csv").stat().st_size > 0 and (tmp_path / "q.csv").stat().st_size > 0


def _csv_of_frame(frame: pd.DataFrame, path, separator: str) -> bytes:
    write_table(frame, path, "csv", separator=separator, force=True)
    return path.read_bytes()


def _csv_of_rows(columns, rows, path, separator: str) -> bytes:
    write_csv_rows(columns, rows, path, separator=separator, force=True)
    return path.read_bytes()


@pytest.mark.parametrize("separator", [",", ";"])
@pytest.mark.parametrize("level", ["commune", "epci", "qpv"])
def test_indicator_rows_write_the_bytes_of_the_indicator_frame(demo_con, tmp_path, level, separator):
    selection = Selection(departements=("13", "84"))
    frame = indicators_by_level(demo_con, level, selection=selection)
    columns, rows = indicator_rows(demo_con, level, selection=selection)
    assert columns == list(frame.columns) and len(rows) == len(frame) > 0
    assert (_csv_of_rows(columns, rows, tmp_path / "rows.csv", separator)
            == _csv_of_frame(frame, tmp_path / "frame.csv", separator))


@pytest.mark.parametrize("radius", [0.0, 300.0, 1000.0])
def test_stored_coverage_rows_write_the_bytes_of_the_coverage_frame(demo_con, tmp_path, radius):
    selection = Selection(departements=("13",))
    found = stored_coverage_rows(demo_con, selection, radius_m=radius)
    assert found is not None
    columns, rows = found
    frame = qpv_coverage(demo_con, selection, radius_m=radius, geometry=None)
    assert columns == list(frame.columns) and len(rows) == len(frame) == 71
    for separator in (",", ";"):
        assert (_csv_of_rows(columns, rows, tmp_path / "rows.csv", separator)
                == _csv_of_frame(frame, tmp_path / "frame.csv", separator))


def test_coverage_beyond_the_stored_radius_is_left_to_the_frame(demo_con):
    assert stored_coverage_rows(demo_con, Selection(departements=("13",)), radius_m=6000.0) is None


@pytest.fixture(scope="module")
def memory():
    """One in-memory DuckDB for the examples below (a connection costs about 35 ms, an example 1 ms)."""
    con = duckdb.connect()
    yield con
    con.close()


texts = st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                                     max_size=12),
                  st.sampled_from(["=1+1", "a;=2", "x,y", 'q"', "l1\nl2", "cr\r", "-3", " @x", "'=1", "\tx", "\rx",
                                   "Saint-Étienne", "plain"]))
floats = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0.1 + 0.2, 1e16, 1e-7, 1234.5, -0.0, 647.2526721906364]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.tuples(texts, st.one_of(st.none(), st.integers(-10**12, 10**12)), floats, st.booleans()),
                     min_size=1, max_size=8),
       separator=st.sampled_from([",", ";"]))
def test_rows_from_duckdb_write_the_bytes_pandas_writes_for_their_frame(memory, tmp_path, data, separator):
    """Any text, integer, float and boolean, missing or not: the frame DuckDB makes of a result and the
    rows it gives of the same result make the same CSV."""
    con = memory
    con.execute("CREATE OR REPLACE TABLE t (texte VARCHAR, entier BIGINT, nombre DOUBLE, drapeau BOOLEAN)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", data)
    query = "SELECT * FROM t ORDER BY rowid"
    frame = store.read.arrow_frame(con.execute(query).arrow())
    found = con.execute(query)
    columns, rows = [d[0] for d in found.description], found.fetchall()
    assert (_csv_of_rows(columns, rows, tmp_path / "rows.csv", separator)
            == _csv_of_frame(frame, tmp_path / "frame.csv", separator))


values = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(),
                   st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
                   st.lists(st.text(alphabet="ab'?\"", max_size=4), min_size=1, max_size=3))


@settings(max_examples=150, deadline=None)
@given(value=values)
def test_a_literal_is_the_value_duckdb_binds(memory, value):
    con = memory
    bound = _first(con.execute("SELECT ? AS v", [value]))
    written = _first(con.execute(sql_with_literals("SELECT ? AS v", [value])))
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(written)
    else:
        assert written == bound and type(written) is type(bound)
        if isinstance(value, float):
            assert math.copysign(1.0, written) == math.copysign(1.0, value)


def _first(result: duckdb.DuckDBPyConnection) -> Any:
    row = result.fetchone()
    assert row is not None
    return row[0]


def test_placeholders_inside_quotes_are_text():
    sql = sql_with_literals("SELECT '?' || ? || \"?\" FROM (SELECT 'x' AS \"?\")", ["it's"])
    assert _first(duckdb.connect().execute(sql)) == "?it'sx"
    with pytest.raises(ValueError):
        sql_with_literals("SELECT ?, ?", [1])
    with pytest.raises(ValueError):
        sql_with_literals("SELECT ?", [1, 2])
