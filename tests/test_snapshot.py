"""Map snapshots: the files themselves (pixels, dpi, PDF/SVG text), on the demo store."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PatchCollection
from matplotlib.colors import to_hex
from PIL import Image
from pyproj import Transformer
from tricky import ESCALE, SCRIPT

from essmap import store
from essmap.domain.formatting import format_date
from essmap.domain.selection import Selection
from essmap.present import viewdata
from essmap.present.classify import NO_DATA_LABEL
from essmap.present.view import MapView
from essmap.present.viewdata import view_data
from essmap.render import maps, snapshot

ARTIFACTS = Path(__file__).parent / "artifacts"
DAY = date(2026, 11, 25)


def poppler(tool: str) -> str:
    """pdftotext/pdftoppm (poppler-utils, installed by .ci/system-deps.sh): a missing tool fails."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} introuvable : installez poppler-utils (.ci/system-deps.sh) pour vérifier les PDF.")
    return path


def pdf_text(content: bytes) -> str:
    result = subprocess.run([poppler("pdftotext"), "-layout", "-", "-"], input=content, capture_output=True,
                            check=True)
    return result.stdout.decode("utf-8")


def save_page_png(content: bytes, name: str, page: int = 1) -> Path:
    """Render one PDF page with pdftoppm into tests/artifacts/ for a human to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    pdf = ARTIFACTS / f"{name}.pdf"
    pdf.write_bytes(content)
    subprocess.run([poppler("pdftoppm"), "-png", "-r", "80", "-f", str(page), "-l", str(page), "-singlefile",
                    str(pdf), str(ARTIFACTS / f"{name}_page{page}")], check=True)
    return ARTIFACTS / f"{name}_page{page}.png"


def overprinted_characters(content: bytes, *, min_share: float = 0.3) -> list[tuple[int, str, str]]:
    """Pairs of printed characters whose boxes overlap (more than ``min_share`` of the smaller one):
    text printed over other text. Each as (page, context of the first, context of the second)."""
    import pdfplumber
    import shapely

    found = []
    with pdfplumber.open(io.BytesIO(content)) as pdf:
        for number, page in enumerate(pdf.pages, start=1):
            chars = [c for c in page.chars if c["text"].strip()]
            boxes = shapely.box([c["x0"] for c in chars], [c["top"] for c in chars], [c["x1"] for c in chars],
                                [c["bottom"] for c in chars])
            first, second = shapely.STRtree(boxes).query(boxes, predicate="intersects")
            for i, j in zip(first, second, strict=True):
                if i < j and boxes[i].intersection(boxes[j]).area > min_share * min(boxes[i].area, boxes[j].area):
                    found.append((number, _around(chars, i), _around(chars, j)))
    return found


def _around(chars: list[dict], k: int) -> str:
    return "".join(c["text"] for c in chars[max(k - 12, 0):k + 12])


def broken_numbers(content: bytes) -> list[str]:
    """Numbers cut across two lines ("10" at the end of a line, "000" at the start of the next)."""
    import pdfplumber

    with pdfplumber.open(io.BytesIO(content)) as pdf:
        text = "\n".join(page.extract_text(layout=False) or "" for page in pdf.pages)
    return re.findall(r"\S*\d\n\d{3}(?!\d)\S*", text)


@pytest.fixture(scope="module")
def demo(demo_con):
    """The demo store's connection and sources."""
    return demo_con, store.sources(demo_con)


@pytest.fixture(scope="module")
def data(demo_con):
    return view_data(demo_con, MapView(selection=Selection(departements=("13",)), level="commune"))


@pytest.fixture(scope="module")
def tricky_data(tricky_db):
    """Commune 13001 named with HTML and mathtext characters."""
    con = store.connect(tricky_db)
    try:
        return view_data(con, MapView(selection=Selection(communes=("13001",)), level="commune"))
    finally:
        con.close()


@pytest.mark.parametrize("orientation", ["paysage", "portrait"])
def test_png_is_exactly_a4_at_300_dpi(data, demo, orientation):
    content = snapshot.render_snapshot(data, sources=demo[1], fmt="png", orientation=orientation, day=DAY)
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    assert image.size == {"paysage": (3508, 2480), "portrait": (2480, 3508)}[orientation]
    # the PNG pHYs chunk stores pixels per metre: 11811 px/m is 300 dpi to 4 decimals
    assert tuple(round(d) for d in image.info["dpi"]) == (300, 300)
    ARTIFACTS.mkdir(exist_ok=True)
    image.reduce(4).save(ARTIFACTS / f"snapshot_{orientation}_reduit.png")


@pytest.mark.poppler
def test_pdf_has_title_subtitle_legend_sources_date_and_synthetic_notice(data, demo):
    title = "Les employeurs de l'ESS dans les Bouches-du-Rhône"
    content = snapshot.render_snapshot(data, sources=demo[1], fmt="pdf", title=title, day=DAY)
    assert content.startswith(b"%PDF")
    text = " ".join(pdf_text(content).split())
    assert title in text
    assert "Bouches-du-Rhône (13)" in text  # subtitle: territory
    assert f"Filtres : {data.filters_label}" in text
    assert "Établissements employeurs de l'ESS pour 10 000 habitants" in text and "(pour 10 000 hab.)" not in text
    for label in data.classification.labels:
        assert label in text
    assert NO_DATA_LABEL in text
    assert "QPV avec tiers-lieu à moins de 1 000 m" in text
    # source line: every loaded source with its millésime, synthetic ones labelled
    assert "Sources : " in text
    assert "INSEE, base SIRENE (établissements de l'ESS) : 2025-10 (données simulées)" in text
    assert "ANCT, quartiers prioritaires (QPV) : 2024 (millésime 2025)" in text
    assert "Cette carte inclut des données simulées" in text
    assert format_date(DAY) == "25/11/2026"
    assert "Export essmap du 25/11/2026" in text
    assert "km" in text  # scale bar
    png = save_page_png(content, "snapshot_paysage")
    assert Image.open(png).size[0] > Image.open(png).size[1]


@pytest.mark.poppler
@pytest.mark.parametrize("orientation", ["paysage", "portrait"])
def test_pdf_texts_never_overprint_and_numbers_stay_whole(data, demo, orientation):
    con, sources = demo
    content = snapshot.render_snapshot(data, sources=sources, fmt="pdf", orientation=orientation, day=DAY)
    assert overprinted_characters(content) == []
    assert broken_numbers(content) == []
    lines = pdf_text(content).splitlines()
    # the legend title keeps "10 000" on one line (the portrait page wraps it)
    assert any("10\u00a0000" in line or "10 000" in line for line in lines if "pour" in line), lines


def test_wrap_never_breaks_a_number():
    text = "Établissements employeurs de l'ESS pour 10 000 habitants (pour 10 000 hab.)"
    for width in range(8, len(text)):
        lines = snapshot.wrap(text, width).splitlines()
        assert not any(re.search(r"\d$", a) and re.match(r"\d{3}", b)
                       for a, b in zip(lines, lines[1:], strict=False)), lines
    assert snapshot.wrap("1 234 567 et 12 3456", 200) == "1\u00a0234\u00a0567 et 12 3456"


def test_svg_is_xml_with_the_title_as_text(data, demo):
    content = snapshot.render_snapshot(data, sources=demo[1], fmt="svg", orientation="portrait",
                                       title="Carte des QPV & des tiers-lieux", day=DAY)
    root = ET.fromstring(content)
    assert root.tag.endswith("svg")
    assert root.get("width") == "595.44pt" or root.get("width").endswith("pt")
    texts = " ".join("".join(e.itertext()) for e in root.iter() if e.tag.endswith("text"))
    assert "Carte des QPV & des tiers-lieux" in texts
    assert NO_DATA_LABEL in texts


@pytest.mark.poppler
def test_names_with_html_and_mathtext_characters_are_plain_text(tricky_data, demo):
    title = f"{SCRIPT} $x$ 50 % – {ESCALE}"
    content = snapshot.render_snapshot(tricky_data, sources=demo[1], fmt="pdf", title=title, day=DAY)
    text = " ".join(pdf_text(content).split())
    assert title in text
    assert f"{SCRIPT} $x$ 50 % (13001)" in text  # territory label in the subtitle
    svg = snapshot.render_snapshot(tricky_data, sources=demo[1], fmt="svg", title=title, day=DAY)
    root = ET.fromstring(svg)  # escaped by the SVG writer: still valid XML
    texts = " ".join("".join(e.itertext()) for e in root.iter() if e.tag.endswith("text"))
    assert title in texts
    assert b"<script>" not in svg


def test_map_fills_units_with_the_interactive_map_colours_in_lambert_93(data):
    with snapshot.text_style():
        fig = snapshot.snapshot_figure(data, sources=pd.DataFrame(columns=["source", "generation", "rows_kept",
                                                                            "is_synthetic"]), day=DAY)
    map_ax = fig.axes[0]
    fills = {to_hex(c) for coll in map_ax.collections if isinstance(coll, PatchCollection)
             for c in coll.get_facecolors()}
    expected = set(data.areas["classe_couleur"].str.lower())
    assert expected <= fills
    # metres in Lambert-93: the département is about 100-150 km wide
    x0, x1 = map_ax.get_xlim()
    assert 700_000 < x0 < x1 < 1_100_000
    assert 90_000 < x1 - x0 < 250_000
    assert snapshot.metric_epsg(data.areas) == 2154


def test_scale_bar_lengths_and_labels():
    assert snapshot.nice_length(23_456) == 20_000
    assert snapshot.nice_length(4_999) == 2_000
    assert snapshot.nice_length(730) == 500
    assert snapshot.distance_label(500) == "500\u202fm"
    assert snapshot.distance_label(20_000) == "20\u202fkm"
    assert snapshot.distance_label(2_500) == "2,5\u202fkm"


def test_north_arrow_points_to_true_north():
    # Lambert-93: no convergence on its central meridian (3° E), grid north east of true north
    # to the east of it (about 1.7° at Marseille, 5.4° E).
    to_l93 = Transformer.from_crs(4326, 2154, always_xy=True)
    assert snapshot.true_north_angle(2154, *to_l93.transform(3.0, 46.5)) == pytest.approx(0, abs=0.01)
    angle = snapshot.true_north_angle(2154, *to_l93.transform(5.4, 43.3))
    assert -2.0 < angle < -1.4


def test_source_line_lists_kept_sources_and_millesimes(demo):
    sources = demo[1]
    line = snapshot.source_line(sources, synthetic=False)
    assert "2025-10 (données simulées)" in line
    assert "2024 (millésime 2025)" in line
    # the census extract kept no row (no coordinates): its millésime is not claimed
    kept_2023 = sources[(sources["generation"] == "2023") & (sources["rows_kept"] > 0)]
    assert ("2023" in line) == (not kept_2023.empty)
    assert "Cette carte inclut" not in line
    assert "Cette carte inclut des données simulées" in snapshot.source_line(sources, synthetic=True)


def test_unknown_format_and_orientation_are_refused(data, demo):
    with pytest.raises(ValueError, match="format « tiff » inconnu"):
        snapshot.render_snapshot(data, sources=demo[1], fmt="tiff")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="orientation « carré » inconnue"):
        snapshot.render_snapshot(data, sources=demo[1], orientation="carré")  # type: ignore[arg-type]


@pytest.mark.poppler
def test_empty_points_and_qpv_still_draw(data, demo):
    bare = data.__class__(**{**data.__dict__, "qpv": data.qpv.iloc[0:0],
                             "etablissements": data.etablissements.iloc[0:0],
                             "tiers_lieux": data.tiers_lieux.iloc[0:0], "synthetic": False})
    text = " ".join(pdf_text(snapshot.render_snapshot(bare, sources=demo[1], fmt="pdf", day=DAY)).split())
    assert "QPV avec tiers-lieu" not in text
    assert "Cette carte inclut des données simulées" not in text
    assert np.all([label in text for label in data.classification.labels])


# --- Optional base map (a local tile server: tests never touch the network) ---------------------

MAGENTA = (255, 0, 255)


@pytest.fixture()
def tile_server():
    """An XYZ tile server on localhost answering every tile with one magenta PNG."""
    import http.server
    import threading

    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), MAGENTA).save(buffer, format="PNG")
    tile = buffer.getvalue()
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png", requested
    server.shutdown()
    server.server_close()


def _magenta_share(png: bytes) -> float:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    return float(np.all(pixels == MAGENTA, axis=1).mean())


@pytest.mark.poppler
def test_base_map_tiles_are_drawn_under_the_map_with_their_attribution(data, demo, tile_server):
    url, requested = tile_server
    tiles = {"tiles": url, "attr": "© tuiles de test"}
    with_tiles = snapshot.render_snapshot(data, sources=demo[1], fmt="png", day=DAY, tiles=tiles)
    assert 0 < len(requested) <= snapshot.MAX_TILES
    assert all(re.fullmatch(r"/\d+/\d+/\d+\.png", path) for path in requested)
    assert _magenta_share(with_tiles) > 0.02  # the sea and the land around, outside the communes
    assert _magenta_share(snapshot.render_snapshot(data, sources=demo[1], fmt="png", day=DAY)) == 0
    text = " ".join(pdf_text(snapshot.render_snapshot(data, sources=demo[1], fmt="pdf", day=DAY,
                                                      tiles=tiles)).split())
    assert "Fond de carte : © tuiles de test" in text


@pytest.mark.poppler
def test_unreachable_tiles_leave_a_plain_background_and_a_note(data, demo):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tiles = {"tiles": f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png", "attr": "© personne"}
    text = " ".join(pdf_text(snapshot.render_snapshot(data, sources=demo[1], fmt="pdf", day=DAY,
                                                      tiles=tiles)).split())
    assert "Fond de carte indisponible (hors ligne)" in text
    assert "© personne" not in text


def test_warp_places_mercator_pixels_at_their_metric_position():
    # one white image with a black top-left quarter, over Marseille
    to_mercator = Transformer.from_crs(4326, 3857, always_xy=True)
    left, bottom = to_mercator.transform(5.0, 43.0)
    right, top = to_mercator.transform(6.0, 44.0)
    image = np.full((200, 200, 3), 255, dtype=np.uint8)
    image[:100, :100] = 0
    to_l93 = Transformer.from_crs(4326, 2154, always_xy=True)
    x0, y0 = to_l93.transform(5.1, 43.1)
    x1, y1 = to_l93.transform(5.9, 43.9)
    warped = snapshot.warp_to_metric(image, (left, right, bottom, top), 2154, (x0, x1), (y0, y1), width=200)
    h, w, _ = warped.shape
    assert tuple(warped[h // 6, w // 6]) == (0, 0, 0)  # north-west stays north-west
    assert tuple(warped[5 * h // 6, 5 * w // 6]) == (255, 255, 255)


def test_legend_takes_the_map_symbology_and_reads_in_grey(data):
    """The snapshot's classes are the map's palette, darker class by class in a grey print; QPVs,
    tiers-lieux and establishments take the interactive map's colours and shapes."""
    handles = snapshot.legend_handles(data)
    classes = [to_hex(h.get_facecolor()) for h in handles[: len(data.classification.colours)]]
    assert classes == list(data.classification.colours)
    grey = [Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)) for c in classes]
    assert grey == sorted(grey, reverse=True) and len(set(grey)) == len(grey), grey
    by_label = {h.get_label(): h for h in handles}
    covered, not_covered = (by_label[n] for n in maps.qpv_radius_layer_names(data.view.radius_m))
    assert to_hex(covered.get_edgecolor()) == to_hex(not_covered.get_edgecolor()) == maps.QPV_COLOUR
    assert covered.get_linestyle() == "--" and not_covered.get_linestyle() == "-"
    tiers_lieux = next(h for label, h in by_label.items() if label.startswith("Tiers-lieux"))
    assert tiers_lieux.get_marker() == "D" and tiers_lieux.get_color() == maps.TIERS_LIEU_COLOUR
    establishments = next(h for label, h in by_label.items() if label.startswith("Établissements"))
    assert establishments.get_color() == maps.ESTABLISHMENT_COLOUR


def test_units_without_data_are_hatched_in_the_snapshot_and_its_legend(demo_con):
    data = viewdata.view_data(demo_con, MapView(Selection(departements=("13",)), indicator="part_qpv_avec_tiers_lieu"))
    assert data.areas["valeur"].isna().any()
    with snapshot.text_style():
        fig = snapshot.snapshot_figure(data, sources=pd.DataFrame(columns=["source", "generation", "rows_kept",
                                                                            "is_synthetic"]), day=DAY)
    hatched = [c for c in fig.axes[0].collections if isinstance(c, PatchCollection) and c.get_hatch()]
    assert len(hatched) == 1 and len(hatched[0].get_paths()) == int(data.areas["valeur"].isna().sum())
    no_data = next(h for h in snapshot.legend_handles(data) if h.get_label() == "Pas de données")
    assert no_data.get_hatch() == snapshot.NO_DATA_HATCH
