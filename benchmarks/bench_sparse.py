"""Benchmark bids_hrf sparse deconvolution against pySPFM 2.0.3 on the same simulated data.

Each measurement runs in a fresh subprocess (same data from a fixed seed) so that its peak
memory (``ru_maxrss`` minus the resident size after imports and data generation) is its own.
pySPFM solves voxels one by one (LARS, stability selection), so its time is linear in the
number of voxels; to keep the run short it is timed on ``--ref-voxels`` voxels and scaled to
the full count (the printed table says which figures are scaled).

Usage::

    python benchmarks/bench_sparse.py            # 200 scans x 2000 voxels + scaling
    python benchmarks/bench_sparse.py --quick    # small sizes, a minute or two
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent(
    """
    import json, logging, resource, sys, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np
    impl, task, n_scans, n_vox, n_sur = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    from bids_hrf.hrf._hrf_matrix import hrf_matrix
    if impl == "pyspfm":
        import pySPFM  # noqa: F401  (import cost outside the timing)
        from pySPFM import SparseDeconvolution as Ref, StabilitySelection as RefStab
        logging.getLogger("GENERAL").setLevel(logging.ERROR)
    else:
        from bids_hrf.hrf.sparse.deconvolution import SparseDeconvolution
        from bids_hrf.hrf.sparse.stability import StabilitySelection
    rng = np.random.default_rng(0)
    H = hrf_matrix(2.0, n_scans)
    S = np.zeros((n_scans, n_vox))
    for v in range(n_vox):
        pos = rng.choice(np.arange(3, n_scans - 10), max(2, n_scans // 25), replace=False)
        S[pos, v] = rng.uniform(1, 3, pos.size) * rng.choice([-1, 1], pos.size)
    Y = H @ S + 0.3 * rng.standard_normal((n_scans, n_vox))

    def rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024

    base = rss_kb()
    t0 = time.perf_counter()
    extra = {}
    if task == "stability":
        if impl == "pyspfm":
            est = RefStab(tr=2.0, n_surrogates=n_sur).fit(Y)
        else:
            est = StabilitySelection(2.0, n_surrogates=n_sur).fit(Y)
    else:
        if impl == "pyspfm":
            est = Ref(tr=2.0, criterion=task).fit(Y)
        else:
            est = SparseDeconvolution(2.0, criterion=task).fit(Y)
            extra["n_iter"] = int(est.n_iter_)
        extra["corr_truth"] = float(np.corrcoef(est.coef_.ravel(), S.ravel())[0, 1])
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"time_s": elapsed, "peak_mb": max(peak - base, 0) / 1024, **extra}))
    """
)


def measure(impl: str, task: str, n_scans: int, n_vox: int, n_sur: int = 50) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    out = subprocess.run(
        [sys.executable, "-c", WORKER, impl, task, str(n_scans), str(n_vox), str(n_sur)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{impl} {task} failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument("--scans", type=int, default=200)
    p.add_argument("--voxels", type=int, default=2000)
    p.add_argument("--ref-voxels", type=int, default=200, help="voxels timed for pySPFM LARS")
    p.add_argument(
        "--ref-stab-voxels",
        type=int,
        default=10,
        help="voxels timed for pySPFM stability selection",
    )
    p.add_argument("--surrogates", type=int, default=50)
    p.add_argument("--no-ref", action="store_true", help="skip pySPFM")
    p.add_argument("--tasks", default="bic,aic,mad,ut,stability", help="comma-separated tasks")
    p.add_argument("--no-scaling", action="store_true", help="skip the bids_hrf scaling table")
    args = p.parse_args(argv)
    if args.quick:
        args.scans, args.voxels, args.ref_voxels = 100, 300, 30
        args.ref_stab_voxels, args.surrogates = 3, 10
    n, v = args.scans, args.voxels
    print(f"## bids_hrf vs pySPFM, {n} scans x {v} voxels\n")
    print("| task | bids_hrf (s) | pySPFM (s) | speed-up | peak MB ours / pySPFM | note |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("bic", args.ref_voxels),
        ("aic", args.ref_voxels),
        ("mad", v),
        ("ut", v),
        ("stability", args.ref_stab_voxels),
    ]
    wanted = set(args.tasks.split(","))
    for task, ref_v in [r for r in rows if r[0] in wanted]:
        ours = measure("ours", task, n, v, args.surrogates)
        note = f"ours: {ours.get('n_iter', '-')} iterations" if task in ("mad", "ut") else ""
        if args.no_ref:
            print(f"| {task} | {ours['time_s']:.2f} | - | - | {ours['peak_mb']:.0f} / - | |")
            continue
        ref = measure("pyspfm", task, n, ref_v, args.surrogates)
        ref_t = ref["time_s"] * v / ref_v
        if ref_v != v:
            note += f" pySPFM timed on {ref_v} voxels x {v / ref_v:.0f}"
        print(
            f"| {task} | {ours['time_s']:.2f} | {ref_t:.1f} | {ref_t / ours['time_s']:.0f}x | "
            f"{ours['peak_mb']:.0f} / {ref['peak_mb']:.0f} | {note.strip()} |"
        )
    if args.no_scaling:
        return 0
    print("\n## bids_hrf scaling (seconds)\n")
    vox_grid = [v // 4, v // 2, v, 2 * v]
    scan_grid = [n // 2, n, 2 * n]
    print(
        "| criterion | "
        + " | ".join(f"{x} vox" for x in vox_grid)
        + " | "
        + " | ".join(f"{s} scans" for s in scan_grid)
        + " |"
    )
    print("|---" * (1 + len(vox_grid) + len(scan_grid)) + "|")
    for task in ("bic", "mad"):
        t_v = [measure("ours", task, n, x)["time_s"] for x in vox_grid]
        t_s = [measure("ours", task, s, v)["time_s"] for s in scan_grid]
        print(f"| {task} | " + " | ".join(f"{t:.2f}" for t in t_v + t_s) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
