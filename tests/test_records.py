"""One owner per record that crosses a process: the module that builds its key, writes it and reads it back.

Every record below (a Redis key and its value, a stream entry, a notice, a JSON body) is registered with its
owner module, the patterns of its keys and its field names. A key pattern found in a string literal of any
other module of the service or the benches fails the test, and so does a field name used as a record's
field elsewhere (a bytes literal, as Redis hands fields back, or a text literal as a dict key, a subscript or
the first argument of ``get``/``pop``/``hget``/``hset``/``hdel``/``hincrby``), a name of the record (a
table or notice kind: any text literal equal to it) or one of its values (an operation: a text literal
compared with something, or a dict value). Docstrings do not count.

Field names are the record's own: a generic name another format shares (an Alertmanager body also has a
``fingerprint`` and a ``status``, a model manifest a ``meta``, an explanation ``values``, ``ea alerts dead
--json`` an ``attempts``) is left out rather than allowed somewhere, so that the list stays exact; a
record's fields, names and values are looked for in the packages that could read it (``scope``); key
patterns everywhere. Left out for that reason: the delta log's stream name ``deltas`` (a training's
``meta["deltas"]`` summary), a delta's ``items`` / ``users`` / ``id``, the manifest's ``parts`` / ``tables``
/ ``meta`` (other packages read them from :meth:`vectorstore.ModelRegistry.manifest`), a job's ``id`` /
``task`` (``ea jobs --json`` prints them). A lease's member has no literal of its own: its script's text is
the pattern. ``docs/architecture.md``'s formats table names every owner, and its Redis keys table every
key the owners build.
"""

from __future__ import annotations

import ast
import functools
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
        names: names the record gives its parts or kinds (a table, a notice kind), looked for in any literal.
        values: values of a field that say what the record is (an operation), looked for in comparisons and
            as dict values.
        scope: the packages where its fields, names and values are looked for (key patterns: everywhere).
    """

    name: str
    owner: str
    keys: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
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
    Record("the registry's keys", "vectorstore/store/registry/keys.py",
           keys=(r"(^|\W)model:\{", r"^models$", r"^v:$", r"^[tx]:$")),
    Record("hnswlib index bytes", "vectorstore/store/index/_blob.py", keys=(r"^EAIDX\d",)),
    Record("detector parts", "anomaly/detector.py", keys=(r"^state_$",), names=("knn_detector",)),
    Record("model-channel notices", "vectorstore/store/registry/notices.py", fields=("event",),
           names=("staged", "activated"), values=("delta",), scope=("vectorstore", "recsys", "workers", "bench")),
    Record("model manifest", "vectorstore/store/registry/_manifest.py", fields=("row_tag", "signature", "created_at"),
           scope=("vectorstore",)),
    Record("signed rows", "vectorstore/store/registry/rows.py", keys=(r"^ea-row-v\d",)),
    Record("leases", "vectorstore/store/registry/leases.py", keys=(r"ARGV\[i\] \.\. suffix",)),
    Record("a Milvus-backed version's collection and the model's alias", "vectorstore/store/milvus.py",
           keys=(r"^ea_$", r"^_v$")),
    Record("delta log: entries, rewritten user rows, write tokens", "recsys/live/delta_log.py",
           keys=(r"^delta_users$", r"^delta_tokens$"), fields=("body", "tag", "op", "uid"),
           values=("upsert_items", "delete_items", "update_users", "update_metadata", "refused"),
           scope=("recsys", "workers", "bench")),
    Record("a graph model's user rows and top-N lists", "recsys/publish/wire.py", keys=(r"-building-",),
           names=("user_vectors", "seen", "topn"), scope=("recsys", "workers", "bench")),
    Record("job records: submitted jobs, progress reports, time-limit records", "workers/_job_records.py",
           keys=(r"^jobs$", r"^job:$", r"^:progress$", r"^:time-limit$")),
)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _exported(tree: ast.AST) -> set[int]:
    """Ids of the constants of ``__all__``: names of Python objects, not of records."""
    return {id(c) for node in ast.walk(tree) if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for c in ast.walk(node.value) if isinstance(c, ast.Constant)}


def _value_positions(tree: ast.AST) -> set[int]:
    """Ids of the constants used where a record's values are: compared with something, or a dict value."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                found.update(id(c) for c in ([side] if isinstance(side, ast.Constant) else
                                             side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else []))
        elif isinstance(node, ast.Dict):
            found.update(id(v) for v in node.values)
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


@dataclass(frozen=True)
class _Literal:
    """A string or bytes literal of a module (docstrings left out) and where it stands."""

    line: int
    value: str | bytes
    as_field: bool  # a bytes literal, a dict key, a subscript, a field call's first argument
    as_value: bool  # compared with something, or a dict value
    exported: bool  # in ``__all__``


@functools.cache
def _literals(path: Path) -> tuple[_Literal, ...]:
    """The literals of a module (parsed once for every record)."""
    tree = ast.parse(path.read_text())
    docs, positions, value_positions = _docstrings(tree), _field_positions(tree), _value_positions(tree)
    listed = _exported(tree)
    return tuple(_Literal(node.lineno, node.value, isinstance(node.value, bytes) or id(node) in positions,
                          id(node) in value_positions, id(node) in listed)
                 for node in ast.walk(tree)
                 if isinstance(node, ast.Constant) and id(node) not in docs and isinstance(node.value, str | bytes))


def _uses(path: Path, record: Record) -> list[str]:
    """Where ``path`` uses ``record``'s key patterns, field names, names or values (``line: literal``)."""
    in_scope = path.relative_to(ROOT).parts[0] in record.scope
    hits = []
    for lit in _literals(path):
        text = lit.value.decode(errors="replace") if isinstance(lit.value, bytes) else lit.value
        if not lit.exported and any(re.search(k, text) for k in record.keys):
            hits.append(f"{lit.line}: key {text!r}")
        if in_scope and lit.as_field and text in record.fields:
            hits.append(f"{lit.line}: field {lit.value!r}")
        if in_scope and isinstance(lit.value, str) and text in record.names:
            hits.append(f"{lit.line}: name {text!r}")
        if in_scope and lit.as_value and text in record.values:
            hits.append(f"{lit.line}: value {text!r}")
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


def test_the_check_finds_a_notice_an_entry_a_table_and_a_key_written_outside_their_owners() -> None:
    """The same for the records of recsys, vectorstore and workers: a notice's kind as a name, an operation
    compared, a delta entry's field, a table's name, a model key and a job key built by hand."""
    stray = ROOT / "recsys" / "_stray_test_module.py"
    stray.write_text('"""Publishes a staged notice on model:{m}:events."""\n'
                     'def write(client, prefix, name, body, fields):\n'
                     '    client.publish(f"{prefix}model:{{{name}}}:events", {"event": "staged"})\n'
                     '    if body["op"] == "delete_items" or fields[b"body"]:\n'
                     '        return client.hget(f"{prefix}job:{name}:progress", "user_vectors")\n')
    try:
        found = {r.name: sorted(_uses(stray, r)) for r in RECORDS}
        assert found["the registry's keys"] == ["3: key 'model:{'"]
        assert found["model-channel notices"] == ["3: field 'event'", "3: name 'staged'"]
        assert found["delta log: entries, rewritten user rows, write tokens"] == [
            "4: field 'op'", "4: field b'body'", "4: value 'delete_items'"]
        assert found["a graph model's user rows and top-N lists"] == ["5: name 'user_vectors'"]
        assert found["job records: submitted jobs, progress reports, time-limit records"] == [
            "5: key ':progress'", "5: key 'job:'"]
    finally:
        stray.unlink()


def test_the_key_table_lists_every_key_the_owners_build() -> None:
    """docs/architecture.md's Redis keys table has a row for every key the registry, the delta log, the job
    records, the stream states and the alert layer build (built here by their owners, with the table's
    placeholders; the alert layer's other keys are written there as suffixes of these)."""
    from alerts._key_state import state_key as incident_state_key
    from alerts._outbox_records import OutboxKeys
    from alerts.incidents import open_key
    from alerts.shared import HookKeys
    from anomaly._stream_state import state_key as series_state_key
    from recsys.live.delta_log import DELTA_TOKENS, DELTA_USERS, DELTAS
    from vectorstore.store.registry.keys import ModelKeys
    from workers._job_records import JobKeys

    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("| key | type | owner |") :].split("\n\n")[0]
    model, jobs = ModelKeys(""), JobKeys("")
    built = [model.models(), *(getattr(model, name)("M") for name in ("seq", "active", "versions", "tokens",
                                                                      "leases", "events")),
             model.manifest("M", 7), model.data("M", 7), model.derived_set("M", 7), model.table("M", 7, "{T}"),
             model.derived("M", 7, "{D}"), *(model.derived("M", 7, name) for name in (DELTAS, DELTA_USERS,
                                                                                       DELTA_TOKENS)),
             jobs.jobs, jobs.progress("{id}"), jobs.time_limit("{id}"), series_state_key("", "M", "S"),
             incident_state_key("", "{kind}", "{model}", "{key}"), open_key(""), OutboxKeys("").outbox,
             HookKeys("").hooks]
    missing = [key for key in (k.replace(":v:7:", ":v:{N}:") for k in built) if f"`{key}`" not in table]
    assert not missing, f"docs/architecture.md's Redis keys table does not list {missing}"
