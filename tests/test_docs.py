"""The README stays in step with the code it documents."""

from __future__ import annotations

import re
from pathlib import Path

from essmap.io.sources import describe_sources

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_shows_the_two_commands_first():
    assert README.index("make run") < README.index("make test") < README.index("essmap build")


def test_readme_sources_table_is_generated_from_the_catalogue():
    block = re.search(r"<!-- sources:start -->\n(.*?)\n<!-- sources:end -->", README, re.S)
    assert block, "README lacks the generated sources block"
    assert block.group(1).strip() == describe_sources().strip(), (
        "README sources table is stale: regenerate it from essmap.io.sources.describe_sources()"
    )
