"""Settings read from the environment: a wrong value names its variable and what it takes."""
from __future__ import annotations

import pytest

from chalicelib.settings import Settings


def test_stop_grace_defaults_to_ten_seconds_and_takes_fractions():
    assert Settings.from_env({}).stop_grace_seconds == 10.0
    assert Settings.from_env({"AERIE_STOP_GRACE_SECONDS": "0.5"}).stop_grace_seconds == 0.5


@pytest.mark.parametrize("value", ["-1", "soon", "3601", "nan"])
def test_a_wrong_stop_grace_names_the_variable(value):
    with pytest.raises(ValueError, match="AERIE_STOP_GRACE_SECONDS must be seconds from 0 to "
                                         f"3600, got '{value}'"):
        Settings.from_env({"AERIE_STOP_GRACE_SECONDS": value})


def test_a_wrong_cpu_affinity_names_the_choices():
    with pytest.raises(ValueError, match="AERIE_CPU_AFFINITY must be one of auto, off"):
        Settings.from_env({"AERIE_CPU_AFFINITY": "first"})
