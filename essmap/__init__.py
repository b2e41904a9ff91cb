"""essmap: the French social and solidarity economy (ESS) on a map.

Flow of data, one direction only::

    raw official files -> essmap.readers (validate, normalise)
                       -> essmap.store (DuckDB)
                       -> essmap.analysis (pure functions)
                       -> essmap.maps / essmap.export
                       -> app.py (Streamlit), essmap.cli (Typer)
"""

__version__ = "0.1.0"
