"""--nprocs is shared out between the HRF steps of the participants so that they run in
parallel (a step declaring every processor made MultiProc run them one after the other)."""

from __future__ import annotations

import pytest

from bids_hrf.config import make_config
from bids_hrf.io.inputs import collect_runs, group_runs
from bids_hrf.workflows.participant import hrf_step_procs, init_participant_wf


@pytest.mark.parametrize("nprocs,n_parallel,expected", [(2, 2, 1), (2, 1, 2), (8, 3, 2),
                                                         (1, 4, 1), (4, 0, 4)])
def test_hrf_step_procs(nprocs, n_parallel, expected):
    assert hrf_step_procs(nprocs, n_parallel) == expected


def test_two_participants_get_one_processor_each(small_dataset, tmp_path):
    config = make_config(small_dataset.bids_dir, tmp_path / "out", "participant", nprocs=2,
                         hrf_method="sparse", work_dir=tmp_path / "work")
    runs, _ = collect_runs(config)
    subjects = sorted({r.subject for r in runs})
    assert len(subjects) == 2
    n_groups = len(group_runs(runs))
    procs = {}
    for subject in subjects:
        wf = init_participant_wf(subject, [r for r in runs if r.subject == subject], config,
                                 str(tmp_path / "errors"), n_parallel=n_groups)
        for name in wf.list_node_names():
            if name.startswith("hrf_"):
                node = wf.get_node(name)
                procs[(subject, name)] = (node.n_procs, node.inputs.nprocs)
    assert procs and all(v == (1, 1) for v in procs.values()), procs
    # a single participant keeps every processor for its HRF step
    one = init_participant_wf(subjects[0], [r for r in runs if r.subject == subjects[0]],
                              config, str(tmp_path / "errors"),
                              n_parallel=len(group_runs([r for r in runs
                                                         if r.subject == subjects[0]])))
    assert all(one.get_node(n).n_procs == 2 for n in one.list_node_names()
               if n.startswith("hrf_"))
