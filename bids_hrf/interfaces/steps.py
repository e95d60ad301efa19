"""Thin nipype adapters: each interface calls one step function and returns its outputs.

Errors a user can act on (:class:`bids_hrf.errors.BidsHrfError`) are also written as JSON
into ``errors_dir`` so that the command line can report them in one line after the
workflow stops, whichever process or cluster node ran the step.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from threadpoolctl import threadpool_limits

from bids_hrf.errors import BidsHrfError
from bids_hrf.options import GLMOptions, HRFOptions, PrepareOptions
from bids_hrf.steps.sink import method_label


def _report_error(errors_dir: str, node_dir: str, exc: BaseException) -> None:
    if not errors_dir:
        return
    Path(errors_dir).mkdir(parents=True, exist_ok=True)
    if isinstance(exc, BidsHrfError):
        payload = {"message": exc.one_line(), "exit_code": exc.exit_code}
    else:
        payload = {"message": f"{type(exc).__name__}: {exc}", "exit_code": 1}
    payload["node"] = node_dir
    name = f"{int(time.time() * 1e6)}_{os.getpid()}.json"
    (Path(errors_dir) / name).write_text(json.dumps(payload))


def _release_joblib_workers() -> None:
    """Stop the joblib (loky) workers a step started when it runs in a MultiProc worker.

    Idle loky workers live 300 s and the nipype MultiProc worker process that started them
    cannot exit before they do: without this, ``--nprocs 2`` waited ~5 minutes after the
    last step before returning.
    """
    import multiprocessing

    if multiprocessing.parent_process() is None:
        return  # Linear plugin: the main process keeps its workers for the next step
    try:
        from joblib.externals.loky import reusable_executor
    except ImportError:  # pragma: no cover - joblib always ships loky
        return
    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        # joblib's MemmappingExecutor.terminate also deletes the memmapping folders of the
        # large arrays it sent to the workers; a plain shutdown leaves them to the resource
        # tracker, which warns "There appear to be N leaked folder objects" at exit
        stop = getattr(executor, "terminate", None)
        if stop is not None:
            stop(kill_workers=True)
        else:  # pragma: no cover - a plain loky executor
            executor.shutdown(wait=True, kill_workers=True)


def _forget_inherited_loky_executor() -> None:
    """In a forked child (a nipype MultiProc worker), forget the parent's joblib executor.

    Its worker processes are the parent's children: jobs a step sent to it would wait
    forever (a Python session that used joblib, then ran bids_hrf with ``--nprocs 2``,
    hung in the first parallel step). The child starts its own executor when it needs one.
    """
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    if module is not None:
        module._executor = None
        module._executor_kwargs = None
        module._executor_lock = threading.RLock()  # it may have been held at the fork


os.register_at_fork(after_in_child=_forget_inherited_loky_executor)


class _StepInputSpec(BaseInterfaceInputSpec):
    errors_dir = traits.Str("", usedefault=True, nohash=True,
                            desc="folder collecting user-facing errors")
    nprocs = traits.Int(1, usedefault=True, nohash=True, desc="processes for this step")
    omp_nthreads = traits.Int(0, usedefault=True, nohash=True,
                              desc="threads of the numerical libraries (BLAS, OpenMP) in "
                                   "this step; 0: the libraries' default")


class _DictOutputSpec(TraitedSpec):
    result = traits.Dict(desc="the step's outputs")
    records = traits.List(desc="files to write into OUTPUT_DIR")


class _Step(SimpleInterface):
    """Run :meth:`_step` (numerical libraries held to ``omp_nthreads`` threads) and report
    user errors."""

    output_spec = _DictOutputSpec

    def _run_interface(self, runtime):
        try:
            with threadpool_limits(limits=self.inputs.omp_nthreads or None):
                result, records = self._step(runtime.cwd)
        except BaseException as exc:
            _report_error(self.inputs.errors_dir, runtime.cwd, exc)
            raise
        finally:
            if self.inputs.nprocs > 1:
                _release_joblib_workers()
        self._results["result"] = result
        self._results["records"] = records
        return runtime

    def _step(self, cwd: str):  # pragma: no cover - abstract
        raise NotImplementedError


class _AtlasInputSpec(_StepInputSpec):
    atlas_spec = traits.Str(mandatory=True)
    atlas_labels = traits.Str("", usedefault=True)
    space = traits.Str(mandatory=True)
    bold = traits.Str(mandatory=True)
    mask = traits.Str(mandatory=True)


class ResolveAtlas(_Step):
    """Resolve ``--atlas`` (file, TemplateFlow, data-driven) for a group of runs."""

    input_spec = _AtlasInputSpec

    def _step(self, cwd):
        from bids_hrf.steps.prepare import resolve_atlas_step

        i = self.inputs
        return resolve_atlas_step(i.atlas_spec, i.atlas_labels or None, i.space,
                                  {"bold": i.bold, "mask": i.mask}, cwd, nprocs=i.nprocs), []


class _PrepareInputSpec(_StepInputSpec):
    run = traits.Dict(mandatory=True, desc="RunInputs as plain values")
    atlas = traits.Dict(mandatory=True, desc="ResolveAtlas result")
    prepare_options = traits.Dict(mandatory=True, desc="PrepareOptions.to_dict()")


class PrepareRun(_Step):
    """Confounds, atlas on the BOLD grid and parcel time series of one run."""

    input_spec = _PrepareInputSpec

    def _step(self, cwd):
        from bids_hrf.io.derivatives import bids_label
        from bids_hrf.steps.prepare import prepare_run_step
        from bids_hrf.steps.sink import output

        run, atlas = self.inputs.run, self.inputs.atlas
        options = PrepareOptions.from_dict(self.inputs.prepare_options)
        result = prepare_run_step(run, atlas, options, cwd)
        ents = {**run["entities"], "space": options.space, "seg": bids_label(atlas["name"])}
        meta = {"Sources": run["sources"]}
        records = [
            output(result["timeseries"], "parcel_timeseries", ents, {
                **meta, "RepetitionTime": run["tr"], "Atlas": atlas["source"],
                "Confounds": result["confounds_description"],
                "HighPass": options.high_pass, "NumberOfDummyScans": result["n_dummy"],
                "NumberOfVolumesKept": result["n_kept"],
                "Description": "mean signal of each parcel after confound regression and "
                               "high-pass filtering, kept volumes only"}),
            output(result["coverage"], "parcel_coverage", ents, {
                **meta, "Description": "parcel sizes and brain-mask coverage on the BOLD grid",
                "Atlas": atlas["source"]}),
        ]
        return result, records


class _HRFInputSpec(_StepInputSpec):
    runs = traits.List(traits.Dict, mandatory=True)
    prepared = traits.List(traits.Dict, mandatory=True)
    atlas = traits.Dict(mandatory=True)
    entities = traits.Dict(mandatory=True)
    hrf_options = traits.Dict(mandatory=True, desc="HRFOptions.to_dict()")


class EstimateHRF(_Step):
    """Per-parcel HRFs of one subject/session/task (all its runs)."""

    input_spec = _HRFInputSpec

    def _step(self, cwd):
        from bids_hrf.io.derivatives import bids_label
        from bids_hrf.steps.hrf import estimate_hrf_step
        from bids_hrf.steps.sink import hrf_records, output

        options = HRFOptions.from_dict(self.inputs.hrf_options)
        runs = [{**r, **p, "events": r["events"], "name": r["name"]}
                for r, p in zip(self.inputs.runs, self.inputs.prepared, strict=True)]
        result = estimate_hrf_step(
            runs, self.inputs.prepared[0]["atlas_bold"], self.inputs.prepared[0]["labels"],
            options, cwd, nprocs=self.inputs.nprocs)
        ents = {**self.inputs.entities, "space": options.space}
        for item in result["maps"]:
            if item.get("run") is not None:
                item["run_entities"] = {k: v for k, v in
                                        self.inputs.runs[item["run"]]["entities"].items()
                                        if k in ("run", "acq", "echo")}
        meta = {"Sources": sorted({x for r in self.inputs.runs for x in r["sources"]}),
                "RepetitionTime": self.inputs.runs[0]["tr"]}
        records = hrf_records(result, ents, self.inputs.atlas["name"], meta)
        seg_ents = {**ents, "seg": bids_label(self.inputs.atlas["name"])}
        records.append(output(self.inputs.prepared[0]["atlas_bold"], "parcellation", seg_ents,
                              {**meta, "Atlas": self.inputs.atlas["source"],
                               "Description": "parcellation resampled to the BOLD grid "
                                              "(nearest neighbour), small parcels dropped"}))
        labels = output(self.inputs.prepared[0]["labels"], "parcellation", seg_ents)
        labels["sidecar"] = False  # dseg.nii.gz and dseg.tsv share one sidecar
        records.append(labels)
        return result, records


class _GLMInputSpec(_StepInputSpec):
    run = traits.Dict(mandatory=True)
    prepared = traits.Dict(mandatory=True)
    hrf = traits.Dict(mandatory=True)
    glm_options = traits.Dict(mandatory=True, desc="GLMOptions.to_dict()")


class FirstLevel(_Step):
    """First-level GLM of one run with the HRFs of :class:`EstimateHRF`."""

    input_spec = _GLMInputSpec

    def _step(self, cwd):
        from bids_hrf.steps.glm import first_level_step
        from bids_hrf.steps.sink import contrast_records, output

        run, p = self.inputs.run, self.inputs.prepared
        options = GLMOptions.from_dict(self.inputs.glm_options)
        result = first_level_step(run, p, self.inputs.hrf.get("hrf", ""), options, cwd,
                                  nprocs=1)  # runs are the parallel unit
        ents = {**run["entities"], "space": options.space}
        meta = {"Sources": run["sources"], **options.sidecar(),
                "HighPass": options.high_pass, "SmoothingFWHM": options.smoothing_fwhm,
                "Confounds": p["confounds_description"]}
        records = _method_desc(contrast_records(result["contrasts"], ents, meta), options)
        design_ents = {k: v for k, v in run["entities"].items()}
        records.append(output(result["design"], "design", design_ents, {
            **meta, "Description": "design matrix (rows: kept volumes)",
            "DesignOf": result["design_parcel"]}))
        return result, records


class _FFXInputSpec(_StepInputSpec):
    run_results = traits.List(traits.Dict, mandatory=True)
    entities = traits.Dict(mandatory=True)
    glm_options = traits.Dict(mandatory=True, desc="GLMOptions.to_dict()")
    sources = traits.List(traits.Str, mandatory=True)


class FixedEffects(_Step):
    """Fixed effects of each contrast across the runs of a subject/session/task."""

    input_spec = _FFXInputSpec

    def _step(self, cwd):
        from bids_hrf.steps.glm import fixed_effects_step
        from bids_hrf.steps.sink import contrast_records

        options = GLMOptions.from_dict(self.inputs.glm_options)
        result = fixed_effects_step(self.inputs.run_results, cwd)
        ents = {**self.inputs.entities, "space": options.space}
        meta = {"Sources": self.inputs.sources, **options.sidecar(),
                "Description": "precision-weighted fixed effects across runs"}
        return result, _method_desc(contrast_records(result["contrasts"], ents, meta), options)


def _method_desc(records: list[dict], options: GLMOptions) -> list[dict]:
    """GLM maps made with estimated HRFs carry ``desc-<method>Hrf``."""
    if not options.estimated_hrfs:
        return records
    desc = method_label(options.hrf_method) + "Hrf"
    return [dict(r, entities={**r["entities"], "desc": desc}) for r in records]


class _SinkInputSpec(BaseInterfaceInputSpec):
    output_dir = traits.Str(mandatory=True)
    records = traits.List(mandatory=True)
    errors_dir = traits.Str("", usedefault=True, nohash=True)
    prepared = traits.Dict({}, usedefault=True,
                           desc="a prepared run of the group (surface runs: its geometry)")


class _SinkOutputSpec(TraitedSpec):
    written = traits.List(traits.Str)


class DerivativesSink(SimpleInterface):
    """Write records into OUTPUT_DIR (never cached: outputs are always rewritten)."""

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec
    always_run = True

    def _run_interface(self, runtime):
        from bids_hrf.steps.sink import sink_step

        try:
            prepared = self.inputs.prepared
            parcels = ((prepared["atlas_bold"], prepared["labels"])
                       if prepared.get("atlas_bold") and prepared.get("labels") else None)
            self._results["written"] = sink_step(self.inputs.output_dir, self.inputs.records,
                                                 prepared.get("geometry"), parcels)
        except BaseException as exc:
            _report_error(self.inputs.errors_dir, runtime.cwd, exc)
            raise
        return runtime


class _ReportInputSpec(_StepInputSpec):
    subject = traits.Str(mandatory=True)
    output_dir = traits.Str(mandatory=True)
    config = traits.Dict(mandatory=True)
    groups = traits.List(traits.Dict, mandatory=True, desc="per group: runs, steps, written")
    written = traits.List(desc="files written (to make the report after them)")


class ParticipantReport(_Step):
    """Write ``sub-<label>.html``."""

    input_spec = _ReportInputSpec
    always_run = True

    def _step(self, cwd):
        from bids_hrf.steps.report import participant_report_step

        path = participant_report_step(self.inputs.subject, self.inputs.output_dir,
                                       self.inputs.config, self.inputs.groups,
                                       nprocs=self.inputs.nprocs)
        return {"report": str(path)}, []
