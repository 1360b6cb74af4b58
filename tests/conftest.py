"""Hypothesis profiles: ``ci`` (default) keeps the whole suite to minutes on 2 cores;
``thorough`` draws many more configurations (``HYPOTHESIS_PROFILE=thorough``)."""

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("GLOG_v", "3")

settings.register_profile(
    "ci", max_examples=8, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough", max_examples=60, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
