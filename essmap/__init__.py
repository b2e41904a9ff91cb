"""essmap: the French social and solidarity economy (ESS) on a map.

Flow of data, one direction only (each package imports only the ones above it)::

    essmap.domain    facts and settings: territories, nomenclatures, schema, selection, errors
    essmap.geo       geometry on the libraries: metric CRS per territory, point in polygon, radius
    essmap.io        official files: catalogue, downloads, readers (validate, normalise, quarantine)
    essmap.store     DuckDB: every SQL string, ingests, the joins stored at ingest
    essmap.analysis  indicators, proximity, reference figures
    essmap.present   what a view shows: view state, view data, classes, base maps
    essmap.render    Folium maps, snapshots, portraits, tables
    app.py, essmap.cli   the Streamlit dashboard and the command line (thin)

``essmap.demo`` writes the synthetic demo inputs; it is not on the path of real data.
"""

__version__ = "0.1.0"
