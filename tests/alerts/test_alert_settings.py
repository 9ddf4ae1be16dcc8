"""The alerting machinery's own settings: EA_ALERT_* read into AlertSettings, bad values named."""

import pytest

from alerts import AlertSettings, IncidentPolicy
from vectorstore import ConfigurationError, Settings

BAD = [{"EA_ALERT_BACKOFF": "-1"}, {"EA_ALERT_MIN_IDLE": "soon"}, {"EA_ALERT_COOLDOWN_POINTS": "inf"},
       {"EA_ALERT_WEBHOOK_FORMAT": "xml"}, {"EA_ALERT_WEBHOOK_URL": "ftp://x/y"}, {"EA_ALERT_FOR_POINTS": "0"},
       {"EA_ALERT_WARMUP_POINTS": "-1"}, {"EA_ALERT_CLEAR_POINTS": "1.5"}]


@pytest.mark.parametrize("env", BAD, ids=lambda env: ",".join(f"{k}={v}" for k, v in env.items()))
def test_bad_alert_settings_name_the_variable(env):
    with pytest.raises(ConfigurationError, match=list(env)[-1]):
        AlertSettings.from_env(env)


def test_alert_settings_are_their_own():
    s = AlertSettings.from_env({"EA_ALERT_FOR_POINTS": "4", "EA_ALERT_GROUP_BY": "service, region",
                                "EA_ALERT_WEBHOOK_SECRET": "s3cret", "EA_ALERT_WEBHOOK_URL": "https://h/x"})
    assert (s.for_points, s.group_by, s.webhook_format) == (4, ("service", "region"), "native")
    assert "s3cret" not in repr(s) and "https://h/x" not in repr(s)
    assert IncidentPolicy.from_settings(s).for_points == 4
    assert not any(name.startswith("alert") for name in Settings.__dataclass_fields__)  # not the service's


def test_one_set_of_incident_settings_with_the_detectors_former_defaults():
    """The incident machine's settings are alerting's alone; their defaults are what the detector's own
    alert rule used (refractory 200, re-arm 20, warm-up 300 rows), so detection did not change."""
    policy = IncidentPolicy.from_settings(AlertSettings.from_env({}))
    assert (policy.for_points, policy.clear_points, policy.cooldown_points, policy.warmup_points) == (1, 20, 200, 300)
    s = AlertSettings.from_env({"EA_ALERT_COOLDOWN_POINTS": "50", "EA_ALERT_WARMUP_POINTS": "0",
                                "EA_ALERT_CLEAR_POINTS": "5"})
    assert IncidentPolicy.from_settings(s) == IncidentPolicy(1, 5, 50, 0)


def test_a_replaced_setting_is_refused_with_its_replacement_named():
    with pytest.raises(ConfigurationError, match="EA_ALERT_COOLDOWN is no longer read.*EA_ALERT_COOLDOWN_POINTS"):
        AlertSettings.from_env({"EA_ALERT_COOLDOWN": "300"})


def test_the_detector_refuses_its_former_alert_settings_naming_their_replacement():
    from anomaly import InvalidParameter, KnnDetector

    for name, replacement in (("refractory", "EA_ALERT_COOLDOWN_POINTS"), ("rearm", "EA_ALERT_CLEAR_POINTS"),
                              ("warmup", "EA_ALERT_WARMUP_POINTS")):
        with pytest.raises(InvalidParameter, match=f"{name}.*{replacement}"):
            KnnDetector(**{name: 10})
