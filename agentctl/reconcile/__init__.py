"""The reconciler: desired state (the plan's tasks) against actual state (the agent tree)."""

from .diff import Diff as Diff
from .diff import TaskState as TaskState
from .diff import diff_plan as diff_plan
from .reconciler import ROOT_ID as ROOT_ID
from .reconciler import Reconciler as Reconciler

__all__ = ["ROOT_ID", "Diff", "Reconciler", "TaskState", "diff_plan"]
