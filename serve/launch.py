"""Start the dashboard with its stack already imported: Streamlit opens its port only then.

``streamlit run app.py`` opens its port at once and imports what ``app.py`` imports in the first
visitor's script run: on 2 cores that import (pandas, GeoPandas, mapclassify's SciPy and matplotlib,
folium, DuckDB...) was most of what the first visitors waited for beyond later ones. This launcher
imports those modules first, then runs Streamlit's own ``streamlit run`` command line with the same
options: a visitor never meets a process that still has to load its stack. ``make run`` and the
replicas of ``make serve`` start the dashboard this way; the store, its catalogue and the default
view live in Streamlit's caches, filled by the first script run (``serve/warm.py``).

Not imported here: the modules that declare a Streamlit component (:data:`COMPONENT_MODULES`).
Streamlit registers a component with its server only when it is declared during a script run; one
imported before would never be served, and the map's frame would not load.

Usage: ``python serve/launch.py [streamlit run options]``, e.g. ``--server.port 8501``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"
#: Modules that declare a Streamlit component when imported: left to app.py's script run (see the module
#: docstring); what they import is imported here.
COMPONENT_MODULES = ("essmap.render.st_folium", "streamlit_folium")


def module_imports(path: Path) -> list[str]:
    """The modules the top-level imports of the file ``path`` load (``from package import module``
    included), in order."""
    names: list[str] = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level and node.module != "__future__":
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names
                      if _is_submodule(node.module, alias.name)]
    return list(dict.fromkeys(names))


def _is_submodule(package: str, name: str) -> bool:
    """Whether ``from package import name`` names a module (found without importing it)."""
    if not hasattr(importlib.import_module(package), "__path__"):  # a module: ``name`` is one of its attributes
        return False
    return importlib.util.find_spec(f"{package}.{name}") is not None


def import_stack(app: Path = APP) -> list[str]:
    """Import what ``app`` imports, and for :data:`COMPONENT_MODULES` what they import instead of
    them; returns the modules imported.

    RuntimeError if a component module was imported all the same (through another module): the map
    would then be broken, which must show at start, not in a visitor's browser.
    """
    imported: list[str] = []

    def load(path: Path) -> None:
        for name in module_imports(path):
            if name in COMPONENT_MODULES:
                spec = importlib.util.find_spec(name)
                assert spec is not None and spec.origin is not None, name
                load(Path(spec.origin))
            elif name not in imported:
                importlib.import_module(name)
                imported.append(name)

    load(app)
    early = [name for name in COMPONENT_MODULES if name in sys.modules]
    if early:
        raise RuntimeError(f"{', '.join(early)} imported before Streamlit runs app.py: its component would not be "
                           "registered (serve/launch.py, COMPONENT_MODULES)")
    return imported


def main(argv: list[str] | None = None) -> int:
    options = sys.argv[1:] if argv is None else argv
    started = time.perf_counter()
    print("essmap : chargement des modules du tableau de bord avant d'ouvrir le port…", file=sys.stderr, flush=True)
    imported = import_stack()
    seconds = f"{time.perf_counter() - started:.1f}".replace(".", ",")
    print(f"essmap : modules du tableau de bord chargés en {seconds} s ({len(imported)} modules) ; "
          "ouverture du port.", file=sys.stderr, flush=True)
    from streamlit.web import cli

    # Streamlit's own command line, as `streamlit run` runs it: same options, configuration and checks
    cli.main(["run", str(APP), *options], prog_name="streamlit")  # exits with Streamlit's status
    return 0


if __name__ == "__main__":
    sys.exit(main())
