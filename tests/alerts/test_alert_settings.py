"""The alerting machinery's own settings: EA_ALERT_* read into AlertSettings, bad values named."""

import pytest

from alerts import AlertSettings, IncidentPolicy
from vectorstore import ConfigurationError, Settings

BAD = [{"EA_ALERT_BACKOFF": "-1"}, {"EA_ALERT_MIN_IDLE": "soon"}, {"EA_ALERT_COOLDOWN": "inf"},
       {"EA_ALERT_WEBHOOK_FORMAT": "xml"}, {"EA_ALERT_WEBHOOK_URL": "ftp://x/y"}, {"EA_ALERT_FOR_POINTS": "0"}]


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
