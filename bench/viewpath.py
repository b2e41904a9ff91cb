"""Server-side split of the dashboard's first map: where the seconds before the map message go.

For each département (or région: ``--region 84``, at its own level unless ``--level``), in one fresh
process per run (``python bench/viewpath.py --db STORE --dep 59``):
opening the store, ``viewdata.view_data`` (the SQL and the geometry read), ``maps.view_map`` (the
folium map, its layers published as files as the dashboard does) and ``st_folium.component_args``
(rendering it into the component's arguments, the map message's content; Leaflet still inlined),
each timed, with the size of those arguments and of the layer files the browser then fetches
(``published_bytes``, the largest in ``largest_published_bytes``). ``--profile FILE`` writes a cProfile listing of the
whole (cumulative and own time) for the report's profile of a miss.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path


def measure(db: Path, departement: str | None, region: str | None = None, level: str = "") -> dict[str, float]:
    started = time.perf_counter()
    from essmap import store
    from essmap.domain.selection import Selection
    from essmap.present import viewdata
    from essmap.present.view import MapView
    from essmap.render import maps, st_folium

    seconds: dict[str, float] = {"imports": time.perf_counter() - started}
    mark = time.perf_counter()
    con = store.connect(db)
    seconds["connect"] = time.perf_counter() - mark
    try:
        mark = time.perf_counter()
        selection = Selection(region=region) if region else Selection(departements=(departement,))
        data = viewdata.view_data(con, MapView(selection, level=level))
        seconds["view_data"] = time.perf_counter() - mark
    finally:
        con.close()
    mark = time.perf_counter()
    # as the dashboard does: layers published as files, the map message keeps colours and tooltips
    folder = Path(tempfile.mkdtemp(prefix="essmap-viewpath-"))
    folium_map = maps.view_map(data, publish=lambda content: maps.publish_payload(folder, "static", content))
    seconds["view_map"] = time.perf_counter() - mark
    mark = time.perf_counter()
    args = st_folium.component_args(folium_map, key="carte")
    seconds["component_args"] = time.perf_counter() - mark
    seconds["args_bytes"] = float(len(json.dumps(args)))
    seconds["establishments"] = float(len(data.etablissements))
    seconds["areas"] = float(len(data.areas))
    published = [f.stat().st_size for f in folder.rglob("*") if f.is_file()]
    seconds["published_bytes"] = float(sum(published))
    seconds["largest_published_bytes"] = float(max(published, default=0))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", type=Path, required=True)
    territory = parser.add_mutually_exclusive_group(required=True)
    territory.add_argument("--dep")
    territory.add_argument("--region")
    parser.add_argument("--level", default="", help="choropleth level (default: the territory's own)")
    parser.add_argument("--profile", type=Path, help="write a cProfile listing here")
    args = parser.parse_args(argv)
    if args.profile:
        profiler = cProfile.Profile()
        result = profiler.runcall(measure, args.db, args.dep, args.region, args.level)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
        args.profile.write_text(text.getvalue(), encoding="utf-8")
    else:
        result = measure(args.db, args.dep, args.region, args.level)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
