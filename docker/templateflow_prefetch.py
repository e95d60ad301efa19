"""Set up TEMPLATEFLOW_HOME in the image and optionally bake templates into it.

Usage (in the Dockerfile's builder stage)::

    python templateflow_prefetch.py [QUERY ...]

Each QUERY is ``template[:key=value,key=value...]`` and is passed to
``templateflow.api.get(template, **entities)``, e.g.
``MNI152NLin2009cAsym:resolution=2,suffix=T1w`` or
``MNI152NLin2009cAsym:atlas=Schaefer2018,desc=400Parcels7Networks,resolution=2,suffix=dseg``.

Without queries it only unpacks the skeleton shipped with the ``templateflow`` package
(metadata and label tables; its NIfTI entries are 0-byte placeholders), so that importing
``templateflow.api`` never needs to write to the read-only home at run time. With queries,
every file fetched must be non-empty, otherwise the build fails (a network failure would
otherwise leave 0-byte placeholders that look like templates).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def parse_query(text: str) -> tuple[str, dict[str, str]]:
    """Split ``template:key=value,...`` into the template name and its entities."""
    template, _, rest = text.partition(":")
    entities: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"bad TEMPLATEFLOW_PREFETCH entry {text!r}: use key=value pairs")
        entities[key] = value
    if not template:
        raise SystemExit(f"bad TEMPLATEFLOW_PREFETCH entry {text!r}: no template name")
    return template, entities


def main(queries: list[str]) -> int:
    home = Path(os.environ.get("TEMPLATEFLOW_HOME", ""))
    if not str(home) or not home.is_absolute():
        raise SystemExit("TEMPLATEFLOW_HOME must be set to an absolute path")
    home.mkdir(parents=True, exist_ok=True)
    from templateflow import api  # unpacks the skeleton into TEMPLATEFLOW_HOME

    print(f"TemplateFlow home {home}: {len(api.templates())} templates in the skeleton")
    for text in queries:
        template, entities = parse_query(text)
        try:
            found = api.get(template, raise_empty=True, **entities)
        except Exception as exc:  # network, S3/DataLad or query errors: one clear line
            raise SystemExit(
                f"could not fetch TemplateFlow files for {text!r}: {type(exc).__name__}: "
                f"{exc} -- TEMPLATEFLOW_PREFETCH needs network access at build time and "
                "entities that match files of the template"
            ) from exc
        paths = [Path(p) for p in (found if isinstance(found, list) else [found])]
        empty = [p for p in paths if p.stat().st_size == 0]
        if empty:
            raise SystemExit(f"TemplateFlow returned empty files for {text!r}: {empty}")
        for path in paths:
            print(f"baked {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
