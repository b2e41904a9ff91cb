"""Base-map tile layers a user may add when online (the maps never need them)."""

#: Tile layers by the name users see: URL template and attribution.
TILES: dict[str, dict[str, str]] = {
    "OpenStreetMap": {
        "tiles": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        "attr": "© contributeurs OpenStreetMap",
    },
    "Plan IGN": {
        "tiles": "https://data.geopf.fr/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=GEOGRAPHICALGRIDSYSTEMS.PLANIGNV2&STYLE=normal&TILEMATRIXSET=PM&FORMAT=image/png&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}",
        "attr": "© IGN Plan IGN",
    },
}
