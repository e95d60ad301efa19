"""Digest of every output of the small demo through all four HRF methods (regression guard).

The scenarios (:data:`SCENARIOS`) run the participant level of ``bids-hrf`` on one small
generated dataset with the canonical, FIR, JDE-VEM and sparse HRF methods (the canonical run
also with its report and the group level). :func:`digest_tree` summarises every file of each
output folder; :func:`compare` lists the differences with the stored manifest
``tests/data/output_manifest.json``.

Regenerate the manifest (only when a change of outputs is intended, and say so in the
commit message)::

    PYTHONPATH=$PWD python -m tests.output_manifest --update

What is compared
----------------
- The set of file names of each output folder, exactly (the configuration hash in
  ``logs/config_<hash>.json`` is replaced by ``<HASH>``: it depends on absolute paths).
- Text files (``.json``, ``.tsv``, ``.md``, ``.toml``, ``.bidsignore``): SHA-256 of the normalised
  text. Normalised: the temporary root folder -> ``<ROOT>``, the configuration hash ->
  ``<HASH>``, ``GeneratedBy[].Version`` -> ``<VERSION>``, and every floating-point number
  written with 10 significant digits (outputs are otherwise byte-identical; this only
  absorbs last-digit float noise). ``.bidsignore`` lines are sorted (a set of patterns,
  grown in the order steps happen to finish).
- NIfTI files: shape, dtype and a digest of the header (voxel sizes, affine to 1e-6,
  qform/sform codes, units, intent) exactly, and a summary of the data compared to a
  tolerance of 1e-10 of the data's magnitude (float64 data; one float32 ulp of the
  magnitude for float32 data): counts of NaN/inf/zero values, min, max, mean, standard
  deviation and three projections on fixed pseudo-random weights (so that one changed
  value anywhere changes the summary).
- HTML reports and SVG/PNG figures: names only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

MANIFEST = Path(__file__).parent / "data" / "output_manifest.json"

#: name -> (participant-level options, run the group level after it)
SCENARIOS: dict[str, tuple[list[str], bool]] = {
    "canonical": (["--hrf-method", "canonical"], True),
    "fir": (["--hrf-method", "fir", "--no-report"], False),
    "jde-vem": (["--hrf-method", "jde-vem", "--no-report"], False),
    "sparse": (["--hrf-method", "sparse", "--no-report"], False),
}
CONTRASTS = {"audio - visual": "audio - visual", "both": "0.5*audio + 0.5*visual"}
TEXT_SUFFIXES = (".json", ".tsv", ".md", ".bidsignore", ".txt", ".csv", ".toml")
NAME_ONLY_SUFFIXES = (".html", ".svg", ".png")
_FLOAT = re.compile(r"(?<![\w.])-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_HASH = re.compile(r"configuration hash ([0-9a-f]{12})")


def make_dataset(root: Path):
    """The small generated dataset shared by all scenarios (2 subjects x 2 runs)."""
    from bids_hrf.datasets import make_synthetic_dataset

    return make_synthetic_dataset(root / "bids", size="small", n_subjects=2, n_runs=2,
                                  seed=1)


def run_scenarios(root: Path, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Run every scenario under ``root``; return scenario -> output folder."""
    from bids_hrf.cli.run import main

    dataset = make_dataset(root)
    contrasts = root / "contrasts.json"
    contrasts.write_text(json.dumps(CONTRASTS))
    outputs = {}
    for name in names or SCENARIOS:
        options, group = SCENARIOS[name]
        out, work = root / f"out-{name}", root / f"work-{name}"
        code = main([str(dataset.bids_dir), str(out), "participant", "--atlas",
                     str(dataset.atlas_img), "-w", str(work), "--nprocs", "1",
                     "--omp-nthreads", "1",
                     "--contrasts", str(contrasts), *options])
        if code:
            raise RuntimeError(f"scenario {name}: participant level exited with {code}")
        if group:
            code = main([str(dataset.bids_dir), str(out), "group", "-w", str(work),
                         "--nprocs", "1"])
            if code:
                raise RuntimeError(f"scenario {name}: group level exited with {code}")
        outputs[name] = out
    return outputs


def _config_hash(out: Path) -> str | None:
    description = out / "dataset_description.json"
    found = _HASH.search(description.read_text()) if description.exists() else None
    return found.group(1) if found else None


def _round_float(match: re.Match) -> str:
    text = match.group(0)
    if re.fullmatch(r"-?\d+", text):
        return text
    value = float(text)
    return "0" if value == 0 else f"{value:.10g}"


def normalise_text(text: str, root: Path, config_hash: str | None) -> str:
    """Text with its volatile parts replaced (see the module docstring)."""
    text = text.replace(str(root), "<ROOT>")
    if config_hash:
        text = text.replace(config_hash, "<HASH>")
    text = re.sub(r'("GeneratedBy"\s*:\s*\[.*?"Version"\s*:\s*)"[^"]*"', r'\1"<VERSION>"',
                  text, flags=re.S)
    return _FLOAT.sub(_round_float, text)


def _nifti_summary(path: Path) -> dict:
    img = nib.load(path)
    hdr = img.header
    data = np.asarray(img.dataobj)
    finite = data[np.isfinite(data)].astype(np.float64) if data.size else np.zeros(0)
    weights = np.random.default_rng(0).uniform(-1, 1, size=(3, finite.size))
    n = max(finite.size, 1)
    header = {
        "zooms": [round(float(z), 6) for z in hdr.get_zooms()],
        "affine": np.round(img.affine, 6).tolist(),
        "codes": [int(hdr["qform_code"]), int(hdr["sform_code"]), int(hdr["intent_code"])],
        "units": [str(u) for u in hdr.get_xyzt_units()],
    }
    return {
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "header": hashlib.sha256(json.dumps(header).encode()).hexdigest()[:16],
        "n_nan": int(np.isnan(data).sum()),
        "n_inf": int(np.isinf(data).sum()),
        "n_zero": int((data == 0).sum()),
        "stats": {
            "min": float(finite.min()) if finite.size else 0.0,
            "max": float(finite.max()) if finite.size else 0.0,
            "mean": float(finite.mean()) if finite.size else 0.0,
            "std": float(finite.std()) if finite.size else 0.0,
            "proj": [float(w @ finite) / n for w in weights],
        },
    }


def digest_file(path: Path, root: Path, config_hash: str | None) -> dict:
    """Summary of one output file (see the module docstring)."""
    name = path.name
    if name.endswith(NAME_ONLY_SUFFIXES):
        return {"kind": "name"}
    if name.endswith((".nii", ".nii.gz")):
        return {"kind": "nifti", **_nifti_summary(path)}
    if name.endswith(TEXT_SUFFIXES):
        text = normalise_text(path.read_text(), root, config_hash)
        if name == ".bidsignore":
            text = "\n".join(sorted(text.splitlines()))
        return {"kind": "text", "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
    return {"kind": "bytes", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}


def digest_tree(out: Path, root: Path) -> dict[str, dict]:
    """Relative (normalised) path -> summary for every file below ``out``."""
    config_hash = _config_hash(out)
    result = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if config_hash:
            rel = rel.replace(config_hash, "<HASH>")
        result[rel] = digest_file(path, root, config_hash)
    return result


def build_manifest(root: Path, names: Sequence[str] | None = None) -> dict[str, dict[str, dict]]:
    """Run the scenarios ``names`` (default: all) under ``root`` and digest their outputs."""
    return {name: digest_tree(out, root) for name, out in run_scenarios(root, names).items()}


def _close(a: float, b: float, tol: float) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=tol)


def _compare_nifti(expected: dict, actual: dict) -> list[str]:
    problems = [f"{key}: {actual.get(key)} != {expected[key]}" for key in expected
                if key != "stats" and expected[key] != actual.get(key)]
    if problems:
        return problems
    e, a = expected["stats"], actual["stats"]
    scale = max(abs(e["min"]), abs(e["max"]), 1e-300)
    ulp = 1e-10 if expected["dtype"] == "float64" else float(np.finfo(np.float32).eps)
    tol = ulp * scale
    for key in ("min", "max", "mean", "std"):
        if not _close(a[key], e[key], tol):
            problems.append(f"{key}: {a[key]!r} != {e[key]!r} (tolerance {tol:.3g})")
    for k, (x, y) in enumerate(zip(a["proj"], e["proj"], strict=True)):
        if not _close(x, y, tol):
            problems.append(f"projection {k}: {x!r} != {y!r} (tolerance {tol:.3g})")
    return problems


def compare(expected: dict, actual: dict) -> list[str]:
    """Differences between two manifests, one line each (empty when they agree)."""
    problems = []
    for scenario in sorted(set(expected) | set(actual)):
        exp, act = expected.get(scenario, {}), actual.get(scenario, {})
        for rel in sorted(set(exp) - set(act)):
            problems.append(f"{scenario}: missing output {rel}")
        for rel in sorted(set(act) - set(exp)):
            problems.append(f"{scenario}: unexpected output {rel}")
        for rel in sorted(set(exp) & set(act)):
            e, a = exp[rel], act[rel]
            if e["kind"] != a["kind"]:
                problems.append(f"{scenario}: {rel}: kind {a['kind']} != {e['kind']}")
            elif e["kind"] == "nifti":
                problems += [f"{scenario}: {rel}: {p}" for p in _compare_nifti(e, a)]
            elif e != a:
                problems.append(f"{scenario}: {rel}: content differs")
    return problems


def dumps(manifest: dict) -> str:
    """The manifest as JSON text with one line per file (readable diffs, small file)."""
    lines = []
    for scenario in sorted(manifest):
        files = manifest[scenario]
        body = ",\n".join(f"  {json.dumps(rel)}: {json.dumps(files[rel], sort_keys=True)}"
                           for rel in sorted(files))
        lines.append(f" {json.dumps(scenario)}: {{\n{body}\n }}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild (``--update``) or check the stored manifest."""
    parser = argparse.ArgumentParser(prog="python -m tests.output_manifest",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true",
                        help=f"rewrite {MANIFEST} instead of comparing with it")
    parser.add_argument("--root", type=Path, default=None,
                        help="empty scratch folder (default: a new temporary folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bids_hrf_manifest_") as tmp:
        root = (args.root or Path(tmp)).resolve()
        actual = build_manifest(root)
    if args.update:
        MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        MANIFEST.write_text(dumps(actual))
        print(f"wrote {MANIFEST} ({sum(len(v) for v in actual.values())} files)")
        return 0
    problems = compare(json.loads(MANIFEST.read_text()), actual)
    print("\n".join(problems) or "outputs match the manifest")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
