# shellcheck shell=bash
# Sourced by .ci/run: services the slow tests need (SLURM cluster) and the container build
# with the containerised demo (issue: containers and clusters). Runs as root.
say "Chromium for tests/test_reports_browser.py (every report rendered headless)"
if ! command -v chromium >/dev/null 2>&1; then
    timeout 300 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
chromium --version
say "SLURM: single-node cluster for tests/test_slurm.py"
bash .ci/slurm.sh start
export BIDS_HRF_SLURM=1
export LOGNAME="${LOGNAME:-root}"
trap 'bash .ci/slurm.sh stop || true' EXIT
say "PyHRF sample data (tests/test_pyhrf_jde.py: the seed example on real data)"
export BIDS_HRF_PYHRF_DATA=/tmp/bids_hrf-ci-pyhrf-data BIDS_HRF_REQUIRE_PYHRF=1
bash .ci/pyhrf_data.sh "$BIDS_HRF_PYHRF_DATA"
say "container: debootstrap base, lint, build, demo with BIDS_DIR read-only"
timeout 1200 bash .ci/container.sh
say "container done"
say "hrf_estimation 1.1 (Pedregosa's R1-GLM) for tests/test_r1glm_golden.py: own venv, numpy<1.24"
HRF_EST_VENV=/tmp/bids_hrf-ci-hrf-estimation
rm -rf "$HRF_EST_VENV"
python3 -m venv "$HRF_EST_VENV"
"$HRF_EST_VENV/bin/pip" install -q "numpy==1.23.5" "scipy<1.12" "scikit-learn<1.4" joblib \
    "setuptools<70" wheel
"$HRF_EST_VENV/bin/pip" install -q --no-build-isolation "hrf-estimation==1.1"
export BIDS_HRF_HRF_ESTIMATION_PYTHON="$HRF_EST_VENV/bin/python"
