"""Every output of the small demo through all four HRF methods matches the stored manifest.

A regression guard for refactors: outputs must stay byte-identical (text, after normalising
the genuinely volatile parts) or equal to 1e-10 of their magnitude (NIfTI data); report and
figure files are compared by name. See :mod:`tests.output_manifest` for what is compared.

If a change of outputs is intended, regenerate the manifest and say so in the commit::

    PYTHONPATH=$PWD python -m tests.output_manifest --update
"""

from __future__ import annotations

import json

import pytest

from tests.output_manifest import MANIFEST, SCENARIOS, build_manifest, compare, digest_tree


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_outputs_match_manifest(tmp_path, scenario):
    """One scenario per test (each on its own copy of the dataset), so that pytest-xdist
    workers share them instead of one worker running all four at the end of the suite."""
    expected = {scenario: json.loads(MANIFEST.read_text())[scenario]}
    actual = build_manifest(tmp_path.resolve(), [scenario])
    problems = compare(expected, actual)
    assert not problems, (
        f"{len(problems)} output difference(s) with {MANIFEST.name} (if intended, run "
        "`PYTHONPATH=$PWD python -m tests.output_manifest --update`):\n"
        + "\n".join(problems[:40]))


def test_manifest_covers_every_method_and_the_group_level():
    manifest = json.loads(MANIFEST.read_text())
    assert set(manifest) == {"canonical", "fir", "jde-vem", "sparse"}
    assert any(name.startswith("group/") for name in manifest["canonical"])
    assert "sub-01.html" in manifest["canonical"]
    for outputs in manifest.values():
        assert any(v["kind"] == "nifti" for v in outputs.values())


def _nifti(path, data):
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), path)


def test_digest_fails_on_a_small_real_change_but_not_on_volatile_fields(tmp_path):
    import numpy as np

    root, root2 = tmp_path.resolve() / "one", tmp_path.resolve() / "two"
    out = root / "out"
    (out / "logs").mkdir(parents=True)
    desc = {"Name": "x", "GeneratedBy": [{"Name": "bids_hrf", "Version": "0.1.0",
                                          "Description": "configuration hash 0123456789ab"}],
            "SourceDatasets": [{"URL": str(root / "bids")}]}
    (out / "dataset_description.json").write_text(json.dumps(desc))
    (out / "logs" / "config_0123456789ab.json").write_text(json.dumps({"x": str(root)}))
    (out / "a.tsv").write_text("x\ty\n0.1\t2.5000000000001\n")
    data = np.random.default_rng(1).normal(size=(4, 5, 6))
    _nifti(out / "m.nii.gz", data)
    (out / "r.html").write_text("<html>1</html>")
    before = {"s": digest_tree(out, root)}
    assert "logs/config_<HASH>.json" in before["s"]

    # volatile: another root, version, hash; last-digit float noise; report bytes
    other = root2 / "out"
    root2.mkdir()
    out.rename(other)
    desc["GeneratedBy"][0].update(Version="9.9", Description="configuration hash ba9876543210")
    desc["SourceDatasets"][0]["URL"] = str(root2 / "bids")
    (other / "dataset_description.json").write_text(json.dumps(desc))
    logs = other / "logs"
    (logs / "config_0123456789ab.json").rename(logs / "config_ba9876543210.json")
    (other / "logs" / "config_ba9876543210.json").write_text(json.dumps({"x": str(root2)}))
    (other / "a.tsv").write_text("x\ty\n0.1\t2.5000000000002\n")
    (other / "r.html").write_text("<html>2</html>")
    assert compare(before, {"s": digest_tree(other, root2)}) == []

    # real changes: a TSV value, one voxel by 1e-6, a new file
    (other / "a.tsv").write_text("x\ty\n0.1\t2.5001\n")
    data[1, 2, 3] += 1e-6
    _nifti(other / "m.nii.gz", data)
    (other / "new.json").write_text("{}")
    problems = compare(before, {"s": digest_tree(other, root2)})
    assert any("a.tsv" in p for p in problems)
    assert any("m.nii.gz" in p and "projection" in p for p in problems)
    assert any("unexpected output new.json" in p for p in problems)
