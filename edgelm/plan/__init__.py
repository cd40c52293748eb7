"""Planner: usage against a device's battery and DRAM (``planner``), sweeps and plots (``figures``)."""

from .planner import PlanError, PlanResult, format_plan, plan

__all__ = ["PlanError", "PlanResult", "format_plan", "plan"]
