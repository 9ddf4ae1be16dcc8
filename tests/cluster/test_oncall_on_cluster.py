"""The on-call's tests of tests/alerts/test_oncall.py (incidents, history, silences, acknowledgements) on a Redis
Cluster: the history, silences and acknowledgements are read and written in the incident's transaction, in the
``{alerts}`` slot. (The worker's test needs the broker, which does not run on a cluster.)"""

from _rerun import suite

globals().update(suite("alerts/test_oncall.py",
                       skip=("test_ea_alerts_incidents_show_silence_ack_on_a_detector_scored_by_the_worker",)))
