"""Screenshots of the dashboard and of a portrait page for the README (``make screenshots``).

Runs the dashboard on the embedded store (``data/essmap.duckdb``) with ``tests/browser/appdriver.py``
(``streamlit run`` on a free port, Debian's chromium), takes the map, the radius tab, a fiche, the
whole région and the phone view, renders page 3 of a portrait PDF with ``pdftoppm``, and writes
small PNGs (palette colours, at most ``MAX_WIDTH`` pixels wide) to ``docs/screenshots/``.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))
from appdriver import StreamlitServer, launch_chromium, map_frame, wait_for_script_idle  # noqa: E402

OUT = REPO / "docs" / "screenshots"
#: The fiche and the portrait shown: Marseille, the largest commune of the embedded data.
COMMUNE = "13055"
MAX_WIDTH = 1200
LAPTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 400, "height": 850}


def save_small(png: bytes, path: Path, *, max_width: int = MAX_WIDTH) -> int:
    """``png`` resized to at most ``max_width`` pixels wide and reduced to 256 colours; returns its size."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path.stat().st_size


def open_view(page, url: str, query: str = "") -> None:
    """Load the dashboard at ``query`` and wait for the end of the script run (and the map, on its tab)."""
    page.goto(url + (f"/?{query}" if query else "/"))
    page.wait_for_selector('[data-testid="stApp"]', timeout=180_000)
    if "onglet=" not in query:
        map_frame(page, timeout_ms=180_000)
    wait_for_script_idle(page, timeout_ms=180_000)
    page.wait_for_timeout(1_500)  # charts and tables draw after the run


def scroll_to(page, selector: str) -> None:
    """Scroll the page so that the first element matching ``selector`` is at the top."""
    page.locator(selector).first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)


def dashboard_shots(db: Path, out: Path) -> dict[str, int]:
    from playwright.sync_api import sync_playwright

    sizes: dict[str, int] = {}
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as folder:
        browser = launch_chromium(playwright)
        with StreamlitServer(db, Path(folder) / "streamlit.log", startup_timeout_s=180) as server:
            laptop = browser.new_context(viewport=LAPTOP, locale="fr-FR").new_page()
            open_view(laptop, server.url)
            scroll_to(laptop, '[data-testid="stMetric"]')
            sizes["carte.png"] = save_small(laptop.screenshot(), out / "carte.png")
            open_view(laptop, server.url, "onglet=rayon")
            scroll_to(laptop, '[role="tablist"]')
            sizes["rayon.png"] = save_small(laptop.screenshot(), out / "rayon.png")
            open_view(laptop, server.url, f"selection={COMMUNE}&onglet=fiche")
            scroll_to(laptop, 'h2:has-text("Fiche : ")')
            sizes["fiche.png"] = save_small(laptop.screenshot(), out / "fiche.png")
            open_view(laptop, server.url, "region=93")
            scroll_to(laptop, '[data-testid="stMetric"]')
            sizes["region.png"] = save_small(laptop.screenshot(), out / "region.png")
            phone = browser.new_context(viewport=PHONE, locale="fr-FR", is_mobile=True, has_touch=True).new_page()
            open_view(phone, server.url)
            sizes["telephone.png"] = save_small(phone.screenshot(), out / "telephone.png", max_width=PHONE["width"])
        browser.close()
    return sizes


def portrait_shot(db: Path, out: Path, *, page: int = 3) -> dict[str, int]:
    from essmap import store
    from essmap.render import portrait

    con = store.connect(db)
    try:
        pdf = portrait.portrait_pdf(con, "commune", COMMUNE)
    finally:
        con.close()
    png = subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", str(page), "-l", str(page), "-"], input=pdf,
                         capture_output=True, check=True).stdout
    return {"portrait.png": save_small(png, out / "portrait.png")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=REPO / "data" / "essmap.duckdb")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sizes = {**dashboard_shots(args.db, args.out), **portrait_shot(args.db, args.out)}
    for name, size in sizes.items():
        print(f"{args.out / name} : {size / 1024:.0f} Ko")
    print(f"Captures faites en {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
