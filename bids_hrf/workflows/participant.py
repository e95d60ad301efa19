"""Participant-level nipype workflows (``init_*_wf`` factories, as in fMRIPrep).

For each subject: per (session, task) group of runs the atlas is resolved once; each run is
prepared (confounds, atlas on its grid, parcel time series); HRFs are estimated over the
group's runs; each run gets its first-level GLM with those HRFs; contrasts are combined
across runs by fixed effects; sinks write BIDS-Derivatives; a report closes the subject.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_hrf.config import Config
from bids_hrf.interfaces.steps import (
    DerivativesSink,
    EstimateHRF,
    FirstLevel,
    FixedEffects,
    ParticipantReport,
    PrepareRun,
    ResolveAtlas,
)
from bids_hrf.io.inputs import RunInputs, group_runs
from bids_hrf.options import GLMOptions, HRFOptions, PrepareOptions


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)


def run_record(run: RunInputs, config: Config) -> dict:
    """Plain, JSON-ready description of a run for the interfaces."""
    sources = []
    for path in (run.bold, run.mask, run.confounds, run.events,
                 *(bold for bold, _ in run.echoes)):
        if path is None:
            continue
        sources.append(_source_uri(Path(path), config))
    return {"bold": str(run.bold), "mask": str(run.mask), "confounds": str(run.confounds),
            "events": str(run.events) if run.events else "", "tr": float(run.tr),
            "entities": run.entities, "name": run.name, "sources": sources,
            "n_volumes": run.n_volumes,
            "echoes": [[str(bold), float(te)] for bold, te in run.echoes]}


def _source_uri(path: Path, config: Config) -> str:
    for name, root in [("fmriprep", d) for d in config.fmriprep_dirs] + [("raw", config.bids_dir)]:
        try:
            return f"bids:{name}:{path.resolve().relative_to(root.resolve())}"
        except ValueError:
            continue
    return str(path)


def add_run_nodes(wf: pe.Workflow, run: RunInputs, config: Config, errors_dir: str,
                  nprocs: int, tag: str) -> tuple[pe.Node, pe.Node | None]:
    """Add the nodes of one run (preparation, first-level GLM) to ``wf``.

    The run's nodes sit in the participant workflow itself (not a sub-workflow): the GLM
    needs the HRFs estimated from every run's preparation, which a run sub-workflow could
    not express without a cycle between workflows.

    Returns
    -------
    prepare, first_level : nipype nodes (``first_level`` is None for runs without events)
    """
    record = run_record(run, config)
    prepare = pe.Node(PrepareRun(run=record,
                                 prepare_options=PrepareOptions.from_config(config).to_dict(),
                                 errors_dir=errors_dir),
                      name=f"prepare_{tag}", mem_gb=_mem(run, 1.5))
    wf.add_nodes([prepare])
    glm = None
    if run.events is not None:
        glm = pe.Node(FirstLevel(run=record, glm_options=GLMOptions.from_config(config).to_dict(),
                                 errors_dir=errors_dir, nprocs=nprocs),
                      name=f"first_level_{tag}",
                      mem_gb=_mem(run, 4.0))
        wf.connect(prepare, "result", glm, "prepared")
    return prepare, glm


def _mem(run: RunInputs, factor: float) -> float:
    """Memory estimate (GB) of a step: 0.25 GB + ``factor`` x the brain voxels' series.

    Brain voxels are taken as 25 % of the BOLD grid (whole-brain MNI grids); measured
    peaks on the realistic demo are ~0.7 GB per step (benchmarks/README.md).
    """
    import nibabel as nib

    try:
        shape = nib.load(str(run.bold)).shape
    except Exception:
        return 1.0
    n_vox = 0.25 * float(np.prod(shape[:3])) if len(shape) >= 3 else 1.0
    n_scans = shape[3] if len(shape) > 3 else 1
    return 0.25 + factor * n_vox * n_scans * 8 / 1e9


def hrf_step_procs(nprocs: int, n_parallel: int) -> int:
    """Processors of one HRF step when ``n_parallel`` of them share ``nprocs``.

    A step declaring all ``--nprocs`` processors makes nipype's MultiProc run the HRF steps
    of the participants one after the other; shared out, they run side by side.
    """
    return max(1, max(1, nprocs) // max(1, n_parallel))


def init_participant_wf(subject: str, runs: list[RunInputs], config: Config,
                        errors_dir: str, nrl_contrasts: dict | None = None,
                        n_parallel: int = 1) -> pe.Workflow:
    """Workflow of one participant: every (session, task) group of its runs and a report.

    ``n_parallel`` is the number of HRF steps of the whole run (all participants, sessions
    and tasks): each gets :func:`hrf_step_procs` processors.
    """
    wf = pe.Workflow(name=f"sub_{_safe(subject)}_wf")
    hrf_options = HRFOptions.from_config(config, nrl_contrasts)
    nprocs = max(1, config.nprocs)
    hrf_procs = hrf_step_procs(nprocs, n_parallel)
    groups = group_runs(runs)
    bundle_merge = pe.Node(niu.Merge(len(groups)), name="merge_groups")
    written_merge = pe.Node(niu.Merge(len(groups)), name="merge_written")
    for g_index, ((sub, ses, task), g_runs) in enumerate(groups.items(), start=1):
        tag = _safe(f"ses-{ses}_task-{task}" if ses else f"task-{task}")
        first = g_runs[0]
        atlas = pe.Node(ResolveAtlas(atlas_spec=config.atlas,
                                     atlas_labels=str(config.atlas_labels or ""),
                                     space=config.space, bold=str(first.bold),
                                     mask=str(first.mask), errors_dir=errors_dir,
                                     nprocs=nprocs), name=f"atlas_{tag}")
        records = [run_record(r, config) for r in g_runs]
        group_ents = {k: v for k, v in (("sub", sub), ("ses", ses), ("task", task)) if v}
        glm_runs = [i for i, r in enumerate(g_runs) if r.events is not None]
        group_options = hrf_options
        if not glm_runs and hrf_options.spec.uses_paradigm:
            # runs without events (task-rest): no event-related HRF can be estimated;
            # they get the canonical HRF table, as with --hrf-method canonical
            group_options = replace(hrf_options, method="canonical")
        hrf = pe.Node(EstimateHRF(runs=records, entities=group_ents,
                                  hrf_options=group_options.to_dict(),
                                  errors_dir=errors_dir, nprocs=hrf_procs),
                      name=f"hrf_{tag}",
                      mem_gb=_mem(first, 6.0) * len(g_runs) * max(1, len(first.echoes)),
                      n_procs=hrf_procs)
        prep_merge = pe.Node(niu.Merge(len(g_runs)), name=f"merge_prepared_{tag}")
        rec_merge = pe.Node(niu.Merge(len(g_runs) + 2), name=f"merge_records_{tag}")
        wf.connect([(atlas, hrf, [("result", "atlas")]),
                    (prep_merge, hrf, [("out", "prepared")]),
                    (hrf, rec_merge, [("records", f"in{len(g_runs) + 1}")])])
        glm_merge = pe.Node(niu.Merge(max(1, len(glm_runs))), name=f"merge_glm_{tag}")
        prepare_nodes = []
        for i, run in enumerate(g_runs):
            prepare, glm = add_run_nodes(wf, run, config, errors_dir, nprocs,
                                         f"run{i + 1}_{tag}")
            prepare_nodes.append(prepare)
            wf.connect([
                (atlas, prepare, [("result", "atlas")]),
                (prepare, prep_merge, [("result", f"in{i + 1}")]),
            ])
            if glm is not None:
                run_rec = pe.Node(niu.Merge(2), name=f"merge_records_run{i + 1}_{tag}")
                wf.connect([
                    (hrf, glm, [("result", "hrf")]),
                    (prepare, run_rec, [("records", "in1")]),
                    (glm, run_rec, [("records", "in2")]),
                    (run_rec, rec_merge, [("out", f"in{i + 1}")]),
                    (glm, glm_merge, [("result", f"in{glm_runs.index(i) + 1}")]),
                ])
            else:
                wf.connect(prepare, "records", rec_merge, f"in{i + 1}")
        bundle = pe.Node(niu.IdentityInterface(fields=["runs", "prepared", "hrf", "glm", "ffx",
                                                       "entities"]),
                         name=f"bundle_{tag}")
        bundle.inputs.runs = records
        bundle.inputs.entities = group_ents
        wf.connect([(prep_merge, bundle, [("out", "prepared")]),
                    (hrf, bundle, [("result", "hrf")])])
        if glm_runs:
            ffx = pe.Node(FixedEffects(entities=group_ents,
                                       glm_options=GLMOptions.from_config(config).to_dict(),
                                       errors_dir=errors_dir,
                                       sources=sorted({s for r in records
                                                       for s in r["sources"]})),
                          name=f"ffx_{tag}")
            wf.connect([(glm_merge, ffx, [("out", "run_results")]),
                        (ffx, rec_merge, [("records", f"in{len(g_runs) + 2}")]),
                        (glm_merge, bundle, [("out", "glm")]),
                        (ffx, bundle, [("result", "ffx")])])
        else:
            setattr(rec_merge.inputs, f"in{len(g_runs) + 2}", [])
            bundle.inputs.glm = []
            bundle.inputs.ffx = {}
        sink = pe.Node(DerivativesSink(output_dir=str(config.output_dir),
                                       errors_dir=errors_dir), name=f"sink_{tag}")
        to_dict = pe.Node(niu.Function(input_names=["runs", "prepared", "hrf", "glm", "ffx",
                                                     "entities"],
                                       output_names=["bundle"], function=_bundle),
                          name=f"summary_{tag}")
        wf.connect([(rec_merge, sink, [("out", "records")]),
                    (prepare_nodes[0], sink, [("result", "prepared")]),
                    (sink, written_merge, [("written", f"in{g_index}")]),
                    (bundle, to_dict, [("runs", "runs"), ("prepared", "prepared"),
                                       ("hrf", "hrf"), ("glm", "glm"), ("ffx", "ffx"),
                                       ("entities", "entities")]),
                    (to_dict, bundle_merge, [("bundle", f"in{g_index}")])])
    if config.write_report:
        report = pe.Node(ParticipantReport(subject=subject, output_dir=str(config.output_dir),
                                           config=config.to_dict(), errors_dir=errors_dir,
                                           nprocs=nprocs),
                         name="report", n_procs=nprocs)
        wf.connect([(bundle_merge, report, [("out", "groups")]),
                    (written_merge, report, [("out", "written")])])
    return wf


def _bundle(runs, prepared, hrf, glm, ffx, entities):
    """Gather one group's step results for the report (a nipype Function node)."""
    return {"runs": runs, "prepared": prepared, "hrf": hrf, "glm": glm, "ffx": ffx,
            "entities": entities}
