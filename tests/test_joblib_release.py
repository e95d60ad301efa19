"""Joblib (loky) workers started by a step inside a MultiProc worker are released cleanly.

The JDE-VEM demo printed "resource_tracker: There appear to be N leaked folder objects" at
exit: the memmapping folder of a large array sent to the loky workers was left to joblib's
resource tracker. The step release must delete it (issue 11, section 5).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import multiprocessing, sys
    import numpy as np
    TESTS = sys.argv[2]

    def work(release):
        import warnings
        sys.path.insert(0, TESTS)
        from jde_simulation import simulate_parcel
        from bids_hrf.hrf.jde.app import estimate_jde_vem

        # a JDE-VEM run on 4 parcels of 500 voxels, 2 runs x 150 scans, with 2 loky
        # workers: large enough for joblib to memmap what it sends them
        sim = simulate_parcel(shape=(10, 10, 10), n_scans=150, seed=0)
        labels = 1 + (sim.ijk[:, 0] >= 5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimate_jde_vem([np.hstack([y, y]) for y in sim.Y], sim.events,
                             sim.frame_times, sim.tr, np.concatenate([labels, labels + 2]),
                             {1: "a", 2: "b", 3: "c", 4: "d"},
                             np.vstack([sim.ijk, sim.ijk + [0, 0, 20]]), n_jobs=2,
                             n_iter_max=2, n_iter_min=1)
        if release:
            from bids_hrf.interfaces.steps import _release_joblib_workers
            _release_joblib_workers()
        else:  # what the release did before: stop the workers only
            from joblib.externals.loky import reusable_executor
            reusable_executor._executor.shutdown(wait=True, kill_workers=True)

    if __name__ == "__main__":
        # a forked child, like a nipype MultiProc worker running a step
        ctx = multiprocessing.get_context("fork")
        p = ctx.Process(target=work, args=(sys.argv[1] == "release",))
        p.start()
        p.join()
        sys.exit(p.exitcode)
""")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["release", "shutdown-only"])
def test_no_leaked_memmapping_folder(tmp_path, mode):
    script = tmp_path / "child.py"
    script.write_text(SCRIPT)
    run = subprocess.run([sys.executable, str(script), mode, str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    leaked = "leaked folder" in run.stderr
    # the old shutdown shows the warning (so this test can fail); the release does not
    assert leaked == (mode == "shutdown-only"), run.stderr
