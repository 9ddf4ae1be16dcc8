"""Alerting: anomaly incidents, a durable outbox, and hooks that deliver them.

::

    import alerts

    alerts.add_hook("oncall", "https://hooks.example/ea", secret="s3cret")   # every consumer delivers to it
    alerts.register(alerts.JsonLinesHook("/var/log/ea-alerts.jsonl"))      # this process's consumers only
    alerts.observe("cpu-detector", "cpu-eu-1", timestamps, scores, threshold, model_version="3")
    alerts.Deliverer().run()          # or: ea alerts run

:class:`IncidentMachine` is the one incident state machine (opening, cooldown, re-arming per source,
resolving, re-alerting, warm-up; pure, in memory): ``ea detect`` runs it over a series' scores, and
:func:`observe` (or an :class:`IncidentSession`) runs it per (detector, series) with its state in Redis and
appends one notification per state change to a Redis Stream; :class:`Deliverer` consumers deliver them to every hook
registered in Redis (:func:`add_hook`, shared by all consumers) and to their own, at least once, with
retries, re-claiming and dead letters. Receivers check :func:`verify_signature` and
deduplicate on the ``Idempotency-Key`` header.

For the on-call engineer: :func:`incidents` and :func:`incident` (firing now, or a time range's; one
whole, with :func:`evidence_text` / :func:`plot_evidence`), :func:`add_silence` / :func:`silences` /
:func:`expire_silence` (Alertmanager-style matchers: a silenced incident opens and resolves but notifies
no hook) and :func:`acknowledge` (an incident's repeats stop until it resolves).

Errors are in :mod:`alerts.exceptions` (``AlertError`` and below); settings (``EA_ALERT_*``) in
:class:`AlertSettings`. This package depends on :mod:`vectorstore` only: the service's scoring (``workers``) feeds it.
"""

from ._outbox_records import DeadLetter, Delivered
from .delivery import Deliverer, DeliveryStats, backoff_delay
from .evidence import evidence_text, plot_evidence
from .exceptions import (
    AlertError,
    CorruptRecord,
    DeadLetterNotFound,
    DeliveryError,
    HookDisabled,
    HookError,
    HookNotFound,
    IncidentNotFound,
    InvalidAlertSetting,
    SilenceNotFound,
)
from .hooks import CallableHook, CeleryTaskHook, Hook, JsonLinesHook
from .incidents import IncidentSession, forget, observe, open_incidents
from .keys import AlertKeys
from .machine import Decisions, IncidentMachine, IncidentPolicy
from .notification import Incident, Notification
from .oncall import IncidentView, acknowledge, incident, incidents
from .outbox import dead_letters, outbox_status, requeue, send_test, tail
from .registry import register, registered_hooks, unregister
from .settings import AlertSettings, get_alert_settings
from .shared import SharedHook, add_hook, disabled_hooks, enable_hook, remove_hook, shared_hooks
from .silences import Matcher, Silence, add_silence, expire_silence, parse_matcher, silences
from .webhook import WebhookHook, alertmanager_body, sign, verify_signature

__all__ = [
    "AlertKeys",
    "AlertError", "AlertSettings", "CorruptRecord", "InvalidAlertSetting", "get_alert_settings", "CallableHook",
    "CeleryTaskHook", "DeadLetter", "DeadLetterNotFound", "Decisions", "Deliverer", "Delivered",
    "DeliveryError", "DeliveryStats", "Hook", "HookDisabled", "HookError", "HookNotFound", "Incident",
    "IncidentMachine", "IncidentPolicy", "IncidentSession", "JsonLinesHook", "Notification", "SharedHook",
    "WebhookHook", "add_hook",
    "alertmanager_body", "backoff_delay", "dead_letters", "disabled_hooks", "enable_hook", "forget", "observe",
    "open_incidents", "outbox_status", "register", "registered_hooks", "remove_hook", "requeue", "send_test",
    "shared_hooks", "sign", "tail", "unregister", "verify_signature",
    "IncidentNotFound", "IncidentView", "Matcher", "Silence", "SilenceNotFound", "acknowledge", "add_silence",
    "evidence_text", "expire_silence", "incident", "incidents", "parse_matcher", "plot_evidence", "silences",
]
