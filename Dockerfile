# bids_hrf BIDS App image.
#
#   docker build -t bids-hrf .
#   docker run --rm -v /data/bids:/data:ro -v /data/out:/out bids-hrf /data /out participant
#
# Stages: `base` (Debian's python3 and nothing else) -> `builder` (venv, pinned wheels, the
# project built into a wheel with the build backend kept out of the runtime) -> `runtime`
# (base + the venv, a non-root user, TemplateFlow home). The last stage is the default target.
#
# Build arguments:
#   TEMPLATEFLOW_PREFETCH  space-separated TemplateFlow queries baked into the image on a
#                          networked build, each `template[:key=value,key=value...]`, e.g.
#                          "MNI152NLin2009cAsym:resolution=2,suffix=T1w
#                           MNI152NLin2009cAsym:atlas=Schaefer2018,desc=400Parcels7Networks,resolution=2"
#                          Default empty: nothing is downloaded (offline builds work).
# Mirrors, proxies and CA bundles are NOT configured here: pass them at build time
# (e.g. `podman build -v ca.crt:/run/ci/ca.crt:ro -v pip.conf:/etc/pip.conf:ro ...`, see
# .ci/container.sh) so that a plain `docker build .` works on a networked machine.

FROM debian:bookworm-slim AS base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

FROM base AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120
# Build tools live in their own venv and never reach the runtime image.
COPY docker/requirements-build.lock /tmp/lock/requirements-build.lock
RUN python3 -m venv /opt/build-venv \
    && /opt/build-venv/bin/pip install --only-binary=":all:" \
       -r /tmp/lock/requirements-build.lock
# The runtime venv: pinned dependencies first (cached layer), then the project. Wheels are
# preferred; the few pure-Python sdists (docopt) build without a compiler. On a platform
# without binary wheels, add build-essential and python3-dev to this stage.
COPY docker/requirements.lock /tmp/lock/requirements.lock
# The packages' own test suites (~170 MB: pandas, scipy, sklearn, ...) are removed in the
# same layer; their `testing` helper modules stay.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --prefer-binary \
       -r /tmp/lock/requirements.lock \
    && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' \
       -exec rm -rf {} +
COPY pyproject.toml README.md /src/
COPY bids_hrf /src/bids_hrf
RUN /opt/build-venv/bin/pip wheel --no-deps --no-build-isolation -w /tmp/dist /src \
    && /opt/venv/bin/pip install --no-deps /tmp/dist/*.whl \
    && /opt/venv/bin/pip check
# TemplateFlow home: the skeleton shipped with the templateflow package (label tables; its
# NIfTI entries are 0-byte placeholders until fetched) plus whatever TEMPLATEFLOW_PREFETCH
# asks for. Fetched files are checked to be non-empty.
ARG TEMPLATEFLOW_PREFETCH=""
ENV TEMPLATEFLOW_HOME=/opt/templateflow
COPY docker/templateflow_prefetch.py /tmp/templateflow_prefetch.py
# Any uid must be able to read the venv and TemplateFlow home (docker run -u, Singularity
# and Apptainer run as the host user). Only files lacking the permission are touched: a
# blanket chmod -R would copy every file into a new layer.
RUN /opt/venv/bin/python /tmp/templateflow_prefetch.py ${TEMPLATEFLOW_PREFETCH} \
    && find /opt/venv /opt/templateflow \( ! -perm -a+r -o -type d ! -perm -a+x \) \
       -exec chmod a+rX {} + \
    && find /opt/venv /opt/templateflow -perm /go+w -exec chmod go-w {} +

FROM base AS runtime
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/templateflow /opt/templateflow
# HOME is world-writable (sticky) so that an arbitrary uid (docker run -u) can use it.
RUN useradd --create-home --home-dir /home/bidshrf --uid 1000 --user-group bidshrf \
    && chmod 1777 /home/bidshrf
# Threads: one per process by default (nipype runs several processes with --nprocs);
# override with `docker run -e OMP_NUM_THREADS=4 ...` or SINGULARITYENV_OMP_NUM_THREADS.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/bidshrf \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    MPLCONFIGDIR=/tmp/matplotlib \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    NUMEXPR_NUM_THREADS=1 \
    VECLIB_MAXIMUM_THREADS=1 \
    MPLBACKEND=Agg \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    NO_ET=1 \
    NIPYPE_NO_ET=1
USER 1000:1000
WORKDIR /tmp
RUN python -c "import bids_hrf, nilearn, nipype, bids, templateflow.api; print(bids_hrf.__version__)"
ENTRYPOINT ["bids-hrf"]
# Last, so that a new date or commit does not invalidate the cached layers above.
ARG BUILD_DATE=""
ARG VCS_REF=""
LABEL org.opencontainers.image.title="bids_hrf" \
      org.opencontainers.image.description="BIDS App: HRF estimation, GLM and group analysis on fMRIPrep derivatives" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="https://github.com/bids-hrf/bids_hrf" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}"
