"""TEMPORARY stand-in (not committed): replaced by the display branch."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

TOLERANCE_DEG = 0.0003


def display_geometries(communes: gpd.GeoDataFrame, qpv: gpd.GeoDataFrame) -> pd.DataFrame:
    com = communes[(communes["type_commune"] != "ARM").fillna(True).to_numpy(dtype=bool)]
    com = com[com.geometry.notna().to_numpy()]
    parts = []
    if len(com):
        simplified = shapely.coverage_simplify(com.geometry.to_numpy(), TOLERANCE_DEG)
        parts.append(pd.DataFrame({"level": "commune", "code": com["code_insee"].astype(str).to_numpy(), "geometry": simplified}))
        for level, column in (("epci", "siren_epci"), ("departement", "code_departement"), ("region", "code_region")):
            codes = com[column].astype("string").to_numpy(dtype=object, na_value=None)
            keep = np.array([c is not None for c in codes])
            groups = pd.Series(np.flatnonzero(keep)).groupby(codes[keep])
            parts.append(pd.DataFrame({"level": level, "code": list(groups.groups),
                                       "geometry": [shapely.union_all(simplified[pos.to_numpy()]) for _, pos in groups]}))
    q = qpv[qpv.geometry.notna().to_numpy()]
    if len(q):
        parts.append(pd.DataFrame({"level": "qpv", "code": q["code_qp"].astype(str).to_numpy(),
                                   "geometry": shapely.simplify(q.geometry.to_numpy(), TOLERANCE_DEG / 3, preserve_topology=True)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["level", "code", "geometry"])
