"""Print ``name==floor`` for every dependency of pyproject.toml (used by .ci/lowest.sh).

Runtime dependencies must each declare a floor (``>=``); from the test extras, the test
runners are pinned too (``pytest``, ``pytest-xdist``, ``hypothesis``). With ``--verify``,
check instead that the installed versions equal those floors.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

TEST_RUNNERS = ("pytest", "pytest-xdist", "hypothesis")
_SPEC = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(>=|==)\s*([0-9][A-Za-z0-9.]*)\s*$")


def floors(pyproject: str) -> dict[str, str]:
    """Map each dependency to its declared minimum version."""
    with open(pyproject, "rb") as handle:
        project = tomllib.load(handle)["project"]
    specs = list(project["dependencies"])
    specs += [s for s in project["optional-dependencies"]["test"]
              if re.split(r"[<>=!~ ]", s, maxsplit=1)[0] in TEST_RUNNERS]
    out: dict[str, str] = {}
    for spec in specs:
        match = _SPEC.match(spec)
        if not match:
            raise SystemExit(f"{pyproject}: dependency {spec!r} has no single '>=' floor")
        out[match.group(1)] = match.group(3)
    return out


def _same(installed: str, floor: str) -> bool:
    """Equal versions up to trailing zeros (``1.24`` is ``1.24.0``)."""
    def norm(text: str) -> str:
        return re.sub(r"(\.0)+$", "", text)

    return norm(installed) == norm(floor)


def main(argv: list[str]) -> int:
    """Print the pins, or verify the installed versions with ``--verify``."""
    pins = floors(argv[0])
    if "--verify" not in argv:
        print("\n".join(f"{name}=={version}" for name, version in pins.items()))
        return 0
    wrong = [f"{name}: {metadata.version(name)} installed, floor {version}"
             for name, version in pins.items() if not _same(metadata.version(name), version)]
    for line in wrong:
        print(line, file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
