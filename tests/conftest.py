"""Hypothesis profiles, and a cache of the test session's own for the tiny preset.

Profiles: ``ci`` (default) keeps the whole suite to minutes on 2 cores;
``thorough`` draws many more configurations (``HYPOTHESIS_PROFILE=thorough``)."""

import os

import pytest
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


@pytest.fixture(scope="session", autouse=True)
def zoo_cache(tmp_path_factory):
    """The tiny preset is written to a cache of the test session's own."""
    cache = tmp_path_factory.mktemp("zoo-cache")
    os.environ["HUNYUAN_ZOO_CACHE"] = str(cache)
    yield cache
    del os.environ["HUNYUAN_ZOO_CACHE"]
