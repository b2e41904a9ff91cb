"""Rebuild ``GeolocalisationEtablissement_concordance.csv`` (run from the repository root).

Hand-made rows in the current layout of INSEE's geolocation file (``plg_qp24``, ``plg_qp15``,
``qualite_*``, ``y_latitude`` before ``x_longitude``; ``;``-separated), for real ESS
establishments of ``StockEtablissement_extrait.csv`` in Marseille and Nice. Positions are placed
against the real QPV 2024 polygons of ``data/geo/qpv2024_paca.geojson`` (the demo store's), so
that essmap's point in polygon and the QPV written as INSEE's agree or not on purpose:

=================  ===========================================  ==============  =========
SIRET              position                                     INSEE plg_qp24  expected
=================  ===========================================  ==============  =========
10002917200010     inside QN01330M                              QN01330M        agree
32407950800010     inside QN01332M                              HZ (none)       disagree
44860472800015     20 m outside QN01354M (Lambert-93 offset)    QN01354M        disagree
80873710000012     inside QN01341I                              QN01330M        disagree
10007004400019     inside QN00610M (Nice)                       QN00610M        agree
10007004400035     its stock position, in no QPV (Nice)         CSZ (none)      agree
=================  ===========================================  ==============  =========

``01234567400019`` (Nice) has no row: placed by the stock, it is not compared. ``plg_qp15``
holds made-up 2015 codes of the right form: the test store has no 2015 QPV, so they are not
compared. Usage: ``.venv/bin/python tests/data/sirene/build_concordance_fixture.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import geopandas as gpd
import shapely
from pyproj import Transformer

from essmap.io.readers.sirene.layouts import GEOLOCALISATION_COLUMNS_QP24

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
QPV = ROOT / "data" / "geo" / "qpv2024_paca.geojson"
OUT = HERE / "GeolocalisationEtablissement_concordance.csv"
OFFSET_M = 20.0

#: SIRET, how to place it (QPV code and "inside"/"outside", or fixed lon/lat), INSEE's QPV 2024,
#: INSEE's QPV 2015, qualite_xy.
ROWS = [
    ("10002917200010", ("QN01330M", "inside"), "QN01330M", "QP013012", "11"),
    ("32407950800010", ("QN01332M", "inside"), "HZ", "HZ", "21"),
    ("44860472800015", ("QN01354M", "outside"), "QN01354M", "QP013040", "12"),
    ("80873710000012", ("QN01341I", "inside"), "QN01330M", "QP013012", "33"),
    ("10007004400019", ("QN00610M", "inside"), "QN00610M", "QP006004", "11"),
    ("10007004400035", (7.262, 43.7102), "CSZ", "CSZ", "11"),
]


def main() -> None:
    qpv = gpd.read_file(QPV).set_index("q")
    metric = qpv.to_crs(2154)
    to_lonlat = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
    records = []
    for siret, where, qp24, qp15, quality in ROWS:
        if isinstance(where[1], float):
            x, y = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True).transform(*where)
        elif where[1] == "inside":
            point = metric.geometry[where[0]].representative_point()
            x, y = point.x, point.y
        else:  # a vertex of the polygon's 20 m buffer: 20 m (planar, Lambert-93) outside it
            grown = metric.geometry[where[0]].buffer(OFFSET_M)
            largest = max(getattr(grown, "geoms", [grown]), key=lambda part: part.area)
            x, y = shapely.get_coordinates(largest.exterior)[0]
        lon, lat = to_lonlat.transform(x, y)
        inside = [code for code, geom in qpv.geometry.items() if geom.intersects(shapely.Point(lon, lat))]
        assert inside == ([where[0]] if where[1] == "inside" else []), (siret, inside)
        row = dict.fromkeys(GEOLOCALISATION_COLUMNS_QP24, "")
        row.update(siret=siret, x=f"{x:.2f}", y=f"{y:.2f}", qualite_xy=quality, epsg="2154", plg_qp24=qp24,
                   plg_qp15=qp15, plg_code_commune="", distance_precision="0", qualite_qp24="1", qualite_qp15="1",
                   y_latitude=f"{lat:.7f}", x_longitude=f"{lon:.7f}")
        records.append(row)
    with open(OUT, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=GEOLOCALISATION_COLUMNS_QP24, delimiter=";", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


if __name__ == "__main__":
    main()
