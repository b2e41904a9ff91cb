"""The DuckDB store: one file, every SQL string of essmap, atomic builds, read-only readers.

Geometry crosses the boundary as WKB and is converted in one place
(:func:`essmap.store.read._frame_from_arrow`). Modules: :mod:`~essmap.store.connection` (open),
:mod:`~essmap.store.write` (schema, atomic updates), :mod:`~essmap.store.read` (layers, sources,
quarantine), :mod:`~essmap.store.ingest` (official files into the store).
"""

from essmap.store.connection import (
    SharedStore,
    connect,
    cursor,
    file_identity,
    list_tables,
)
from essmap.store.queries import catalogue, qpv_generations
from essmap.store.read import (
    copy_quarantine_csv,
    departements_present,
    layer_counts,
    quarantine_batches,
    quarantine_count,
    quarantine_rows,
    quarantine_summary,
    read_layer,
    sources,
)
from essmap.store.write import (
    GEOMETRY_TABLES,
    StagedPoints,
    atomic_update,
    delete_rows,
    insert_rows,
    record_source,
    refresh_sources,
    replace_rows,
)

__all__ = [
    "GEOMETRY_TABLES", "SharedStore", "StagedPoints", "atomic_update", "copy_quarantine_csv", "catalogue", "connect",
    "cursor", "file_identity", "delete_rows", "departements_present", "insert_rows", "layer_counts",
    "list_tables", "qpv_generations", "quarantine_batches", "quarantine_count", "quarantine_rows",
    "quarantine_summary", "read_layer", "record_source", "refresh_sources", "replace_rows", "sources",
]
