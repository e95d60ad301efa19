# Sourced by .ci/run: services the slow tests need (SLURM cluster) and the container build
# with the containerised demo (issue: containers and clusters). Runs as root.
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
