"""Profiler: device profiles, the memory model and the speed/energy model.

Submodules: ``units`` (quantities in profile files), ``devices`` (profiles),
``memory`` (peak DRAM), ``energy`` (time and joules per token), ``report``
(``edgelm profile``).
"""

from .devices import DeviceProfile, get_profile, list_profiles, load_profile
from .report import ProfileReport, format_report, profile_model

__all__ = ["DeviceProfile", "ProfileReport", "format_report", "get_profile", "list_profiles", "load_profile",
           "profile_model"]
