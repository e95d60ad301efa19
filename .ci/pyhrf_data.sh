#!/usr/bin/env bash
# Fetch PyHRF's sample data (a real 125-scan localizer with its two-parcel parcellation and
# paradigm, and the Willard 499-parcel atlas) from the PyHRF 0.5.0.post1 source distribution
# on PyPI. PyHRF does not build on Python 3: pip fails after unpacking, --no-clean keeps the
# tree. Usage: bash .ci/pyhrf_data.sh [DEST] (default: ~/.cache/bids_hrf/pyhrf).
set -euo pipefail
dest="${1:-${BIDS_HRF_PYHRF_DATA:-$HOME/.cache/bids_hrf/pyhrf}}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
TMPDIR="$tmp" python -m pip download pyhrf==0.5.0.post1 --no-deps --no-binary :all: \
    --no-clean -d "$tmp/sdist" >"$tmp/pip.log" 2>&1 || true
src="$(find "$tmp" -type d -path '*python/pyhrf/datafiles' | head -n 1)"
if [ -z "$src" ]; then
    cat "$tmp/pip.log" >&2
    echo "pyhrf_data.sh: PyHRF's sdist could not be fetched from PyPI" >&2
    exit 1
fi
mkdir -p "$dest"
for f in subj0_bold_session0.nii.gz subj0_parcellation.nii.gz paradigm_loc.csv \
         stanford_willard_parcellation_3x3x3mm.nii.gz; do
    cp "$src/$f" "$dest/$f"
done
echo "PyHRF sample data in $dest"
