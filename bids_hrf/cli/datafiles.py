"""``bids-hrf-datafiles``: list the data files bids_hrf can use offline (PyHRF's
``pyhrf_list_datafiles``).

    bids-hrf-datafiles [-b/--base-name]

Lists, one path per line: the files shipped inside the bids_hrf package (the example
atlas ``tpl-MNI152NLin2009aSym_res-3mm_atlas-bidshrfExample_desc-100_dseg.nii.gz`` and its
labels TSV, usable as ``--atlas FILE --atlas-labels TSV``; the report template), the
generator of the example dataset (``bids_hrf/datasets/synthetic.py``, run by
``bids-hrf-demo DIR``), the MNI152 templates and masks that bids_hrf uses from nilearn's
installed copy (reports, backgrounds), and PyHRF's sample data and Willard atlas when they
have been fetched (``bash .ci/pyhrf_data.sh``; folder ``$BIDS_HRF_PYHRF_DATA`` or
``~/.cache/bids_hrf/pyhrf``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "bids-hrf-datafiles"
_SKIP = {".py", ".pyc"}

#: The example atlas shipped in ``bids_hrf/data`` (made by tools/make_example_atlas.py).
EXAMPLE_ATLAS = "tpl-MNI152NLin2009aSym_res-3mm_atlas-bidshrfExample_desc-100_dseg.nii.gz"


def pyhrf_data_dir() -> Path | None:
    """Folder holding PyHRF's sample data, when fetched (None otherwise)."""
    for candidate in (os.environ.get("BIDS_HRF_PYHRF_DATA"),
                      Path.home() / ".cache" / "bids_hrf" / "pyhrf"):
        if candidate and Path(candidate).is_dir() and any(Path(candidate).iterdir()):
            return Path(candidate)
    return None


def data_files() -> list[Path]:
    """Every data file bids_hrf can use offline, package files first."""
    import bids_hrf

    root = Path(bids_hrf.__file__).parent
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix not in _SKIP
                   and "__pycache__" not in p.parts)
    files.append(root / "datasets" / "synthetic.py")  # the example dataset's generator
    try:
        import nilearn

        nl = Path(nilearn.__file__).parent / "datasets" / "data"
        files += sorted(nl.glob("mni_icbm152_*.nii.gz"))
    except ImportError:  # pragma: no cover - nilearn is a dependency
        pass
    pyhrf = pyhrf_data_dir()
    if pyhrf is not None:
        files += sorted(p for p in pyhrf.iterdir() if p.is_file())
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Print the data files, one per line; returns the exit code."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("-b", "--base-name", action="store_true",
                        help="display only base names")
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0) and 64
    try:
        for path in data_files():
            print(path.name if args.base_name else path)
    except BrokenPipeError:  # piped into head
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
