"""Thin nipype adapters of the group steps (second-level GLM, group HRFs, connectivity,
``group.html``)."""

from __future__ import annotations

from nipype.interfaces.base import traits

from bids_hrf.interfaces.steps import _Step, _StepInputSpec


class _GroupInputSpec(_StepInputSpec):
    inventory = traits.List(traits.Dict, mandatory=True)
    participants = traits.Str("", usedefault=True)
    group_model = traits.Any(None, usedefault=True)
    space = traits.Str(mandatory=True)
    settings = traits.Dict({}, usedefault=True, desc="options of the step")


class GroupGLM(_Step):
    """Second-level model of each subject-level contrast."""

    input_spec = _GroupInputSpec

    def _step(self, cwd):
        from bids_hrf.steps.group import group_glm_step

        i = self.inputs
        return group_glm_step(i.inventory, i.participants or None, i.group_model, i.space,
                              cwd, settings={**i.settings, "nprocs": i.nprocs})


class GroupHRF(_Step):
    """Every subject's parcel HRFs and parameters, group means and comparisons."""

    input_spec = _GroupInputSpec

    def _step(self, cwd):
        from bids_hrf.steps.group_hrf import group_hrf_step

        i = self.inputs
        return group_hrf_step(i.inventory, i.participants or None, i.group_model, i.space,
                              cwd, settings=i.settings)


class GroupConnectivity(_Step):
    """Per-run connectivity matrices, group means, edge and network comparisons."""

    input_spec = _GroupInputSpec

    def _step(self, cwd):
        from bids_hrf.steps.group_connectivity import connectivity_step

        i = self.inputs
        return connectivity_step(i.inventory, i.participants or None, i.group_model, i.space,
                                 cwd, settings=i.settings)


class _GroupReportInputSpec(_StepInputSpec):
    output_dir = traits.Str(mandatory=True)
    config = traits.Dict(mandatory=True)
    results = traits.List(traits.Dict, mandatory=True)
    written = traits.List(desc="files written (to make the report after them)")


class GroupReport(_Step):
    """Write ``group.html``."""

    input_spec = _GroupReportInputSpec
    always_run = True

    def _step(self, cwd):
        from bids_hrf.steps.group_report import group_report_step

        path = group_report_step(self.inputs.output_dir, self.inputs.config,
                                 self.inputs.results)
        return {"report": str(path)}, []
