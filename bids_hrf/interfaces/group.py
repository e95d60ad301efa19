"""Thin nipype adapters of the group steps (second-level GLM, group HRFs, connectivity,
``group.html``)."""

from __future__ import annotations

from nipype.interfaces.base import traits

from bids_hrf.interfaces.steps import _Step, _StepInputSpec
from bids_hrf.options import GroupOptions
from bids_hrf.steps.group import group_glm_step
from bids_hrf.steps.group_connectivity import connectivity_step
from bids_hrf.steps.group_hrf import group_hrf_step
from bids_hrf.steps.group_report import group_report_step


class _GroupInputSpec(_StepInputSpec):
    inventory = traits.List(traits.Dict, mandatory=True)
    options = traits.Dict(mandatory=True, desc="GroupOptions.to_dict()")


class GroupGLM(_Step):
    """Second-level model of each subject-level contrast."""

    input_spec = _GroupInputSpec

    def _step(self, cwd):
        return group_glm_step(self.inputs.inventory, GroupOptions.from_dict(self.inputs.options),
                              cwd, nprocs=self.inputs.nprocs)


class GroupHRF(_Step):
    """Every subject's parcel HRFs and parameters, group means and comparisons."""

    input_spec = _GroupInputSpec

    def _step(self, cwd):
        return group_hrf_step(self.inputs.inventory, GroupOptions.from_dict(self.inputs.options),
                              cwd)


class GroupConnectivity(_Step):
    """Per-run connectivity matrices, group means, edge and network comparisons."""

    input_spec = _GroupInputSpec

    def _step(self, cwd):
        return connectivity_step(self.inputs.inventory,
                                 GroupOptions.from_dict(self.inputs.options), cwd)


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
        path = group_report_step(self.inputs.output_dir, self.inputs.config,
                                 self.inputs.results)
        return {"report": str(path)}, []
