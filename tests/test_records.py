"""One owner per record that crosses a process: the module that builds its key, writes it and reads it back.

Every record below (a Redis key and its value, a stream entry, a notice, a JSON body) is registered with its
owner module, the patterns of its keys and its field names. A key pattern found in a string literal of any
other module of the service or the benches fails the test, and so does a field name used as a record's
field elsewhere (a bytes literal, as Redis hands fields back, or a text literal as a dict key, a subscript or
the first argument of ``get``/``pop``/``hget``/``hset``/``hdel``/``hincrby``). Docstrings do not count.

Field names are the record's own: a generic name another format shares (an Alertmanager body also has a
``fingerprint`` and a ``status``, a model manifest a ``meta``, an explanation ``values``, ``ea alerts dead
--json`` an ``attempts``) is left out rather than allowed somewhere, so that the list stays exact; a
record's fields are looked for in the packages that could read it (``scope``). To register more records,
add them to :data:`RECORDS` (the next step: the model-channel notices, delta entries and registry keys of
recsys and vectorstore). ``docs/architecture.md``'s formats table names every owner.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("vectorstore", "recsys", "anomaly", "alerts", "workers", "bench")
#: Calls whose first argument names a field of the record they read or write.
FIELD_CALLS = {"get", "pop", "hget", "hset", "hdel", "hincrby", "hexists", "setdefault"}


@dataclass(frozen=True)
class Record:
    """A record and its one owner.

    Attributes:
        name: what the record is (as the formats table of docs/architecture.md says).
        owner: the owner module, relative to the repository root.
        keys: regular expressions of its key names (and of field names built like keys), searched in every
            string literal, f-strings' text included.
        fields: its field names, looked for where a record's fields are (see the module docstring).
        scope: the packages where its field names are looked for (key patterns are looked for everywhere).
    """

    name: str
    owner: str
    keys: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    scope: tuple[str, ...] = SCANNED


RECORDS = (
    Record("stream state of a series", "anomaly/_stream_state.py",
           keys=(r"(^|\W)series:\{", r"^:lock$", r"^cal$"),
           fields=("token", "missing", "start_row", "recent_from", "last_score", "calibrators", "value_range",
                   "<f8", "<i8", "u1"),
           scope=("anomaly", "workers")),
    Record("labels of a series (the on-call's feedback)", "anomaly/_labels.py", keys=(r"^:labels$",),
           fields=("undone_at", "first_row"), scope=("anomaly", "workers", "bench")),
    Record("incident machine state", "alerts/_key_state.py", keys=(r"\{alerts\}:state:",),
           fields=("warm_from", "last_alert", "clear_from", "calm")),
    Record("open incidents", "alerts/incidents.py", keys=(r"\{alerts\}:open\b",)),
    Record("notification", "alerts/notification.py", fields=("ea.alert/1", "created_at_ts", "idempotency_key")),
    Record("outbox entries, retries, delivery records, dead letters, delivered log, delivery counters",
           "alerts/_outbox_records.py", keys=(r"\{alerts\}:(outbox|retry|dead|delivered|delivery:|counters)", r"^#n$"),
           fields=("n", "hooks", "outbox_id"), scope=("alerts", "workers", "bench")),
    Record("shared hook specs, their version, disabled-hook marks", "alerts/shared.py", keys=(r"\{alerts\}:hooks",),
           fields=("added_at",)),
    Record("incident history", "alerts/_history.py", keys=(r"\{alerts\}:incidents",), fields=("latest",)),
    Record("silences", "alerts/silences.py", keys=(r"\{alerts\}:silences",),
           fields=("matchers", "starts_at", "ends_at", "created_by")),
    Record("acknowledgements", "alerts/acks.py", keys=(r"\{alerts\}:acks",)),
    Record("the workers' metrics", "workers/metrics.py", keys=(r"metrics:workers",)),
)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _field_positions(tree: ast.AST) -> set[int]:
    """Ids of the constants used where a record's fields are: dict keys, subscripts, field calls' first
    argument."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            found.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Subscript):
            found.add(id(node.slice))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args \
                and node.func.attr in FIELD_CALLS:
            found.add(id(node.args[0]))
    return found


def _uses(path: Path, record: Record) -> list[str]:
    """Where ``path`` uses ``record``'s key patterns or field names (``line: literal``)."""
    tree = ast.parse(path.read_text())
    docs, positions = _docstrings(tree), _field_positions(tree)
    package = path.relative_to(ROOT).parts[0]
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in docs or not isinstance(node.value, str | bytes):
            continue
        text = node.value.decode(errors="replace") if isinstance(node.value, bytes) else node.value
        if isinstance(node.value, str) and any(re.search(k, text) for k in record.keys):
            hits.append(f"{node.lineno}: key {text!r}")
        in_scope = package in record.scope
        as_field = isinstance(node.value, bytes) or id(node) in positions
        if in_scope and as_field and text in record.fields:
            hits.append(f"{node.lineno}: field {node.value!r}")
    return hits


def _modules() -> list[Path]:
    return sorted(p for package in SCANNED for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_a_record_s_keys_and_fields_appear_in_its_owner_only(record: Record) -> None:
    assert (ROOT / record.owner).exists(), f"{record.name}: owner {record.owner} is not a module"
    assert _uses(ROOT / record.owner, record), f"{record.name}: its owner {record.owner} does not use it"
    found = {str(p.relative_to(ROOT)): hits for p in _modules() if str(p.relative_to(ROOT)) != record.owner
             for hits in [_uses(p, record)] if hits}
    assert not found, f"{record.name} (owner {record.owner}) used elsewhere: {found}"


def test_the_formats_table_names_every_owner() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("## Stored formats") : text.index("## Redis keys")]
    missing = [r.owner for r in RECORDS if f"`{r.owner}`" not in table]
    assert not missing, f"docs/architecture.md's formats table does not name {missing}"


def test_the_check_finds_a_record_used_outside_its_owner(tmp_path: Path, monkeypatch) -> None:
    """The check itself: a module that reads an outbox entry's field, builds the outbox key or writes a dead
    letter is caught; its docstring is not."""
    stray = ROOT / "alerts" / "_stray_test_module.py"
    stray.write_text('"""Reads the {alerts}:outbox stream."""\n'
                     'def read(client, prefix, fields):\n'
                     '    client.xadd(f"{prefix}{{alerts}}:dead", {"outbox_id": 1})\n'
                     '    return fields[b"n"], f"{prefix}{{alerts}}:outbox"\n')
    try:
        [outbox] = [r for r in RECORDS if r.owner == "alerts/_outbox_records.py"]
        assert _uses(stray, outbox) == ["3: key '{alerts}:dead'", "3: field 'outbox_id'", "4: field b'n'",
                                        "4: key '{alerts}:outbox'"]
    finally:
        stray.unlink()
