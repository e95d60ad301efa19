#!/usr/bin/env bash
# Lowest-versions check: install the declared minimum version of every dependency of
# pyproject.toml (runtime dependencies, and pytest/pytest-xdist/hypothesis from the test
# extras) in a separate virtual environment, then run a fast subset of the tests with them.
# A floor that cannot be installed or that fails these tests is a floor to raise in
# pyproject.toml. Run once from .ci/run; usable alone: bash .ci/lowest.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${BIDS_HRF_LOWEST_VENV:-/tmp/bids_hrf-lowest-venv}}"
rm -rf "$VENV"
python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
PINS="$(python .ci/lowest_pins.py pyproject.toml)"
echo "lowest versions: $(echo "$PINS" | tr '\n' ' ')"
# shellcheck disable=SC2086
python -m pip install -q $PINS
python -m pip install -q --no-deps .
python -m pip check
# Every pin must be what got installed (pip may not silently move a floor).
python .ci/lowest_pins.py pyproject.toml --verify
export NIPYPE_NO_ET=1 MPLBACKEND=Agg TEMPLATEFLOW_AUTOUPDATE=0 OMP_NUM_THREADS=1
# A fast subset touching every runtime dependency: configuration and CLI parsing, confounds
# (nilearn, pandas), atlases and time series (nibabel, nilearn, scikit-learn), HRF bases,
# sparse deconvolution (scipy, PyWavelets), GLM (nilearn), group HRF statistics (SciPy's
# permutation test), connectivity, pybids inputs, report figures (matplotlib, jinja2),
# surface data (nibabel GIFTI/CIFTI-2 axes, nilearn's fsaverage5 meshes).
python -m pytest -q -x -p no:cacheprovider -m "not slow" \
    tests/test_cli_options.py tests/test_confounds.py tests/test_hrf_basis.py \
    tests/test_sparse_core.py tests/test_first_level.py tests/test_hrf_comparison.py \
    tests/test_connectivity.py tests/test_timeseries.py tests/test_inputs_filters.py \
    tests/test_second_level.py tests/test_contrasts.py \
    tests/test_derivatives.py tests/test_surface_data.py tests/test_surface_atlas.py
