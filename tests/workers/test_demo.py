"""`ea demo` end to end (small sizes) against the test Redis and the test worker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from workers.cli import main


def test_demo_runs_end_to_end(celery_worker, tmp_path, redis_url):
    out = CliRunner().invoke(main, ["demo", "--small", "--out", str(tmp_path), "--redis-url", redis_url])
    assert out.exit_code == 0, out.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["versions"]) >= {"demo-node2vec", "demo-lightgcn", "demo-cpu_utilization"}
    for rec in summary["recommendations"]:
        assert len(rec["items"]) == 5 and rec["source"] in ("index", "precomputed")
        seen = pd.read_csv(tmp_path / "data" / "interactions.csv").query("user == @rec['user']").item
        assert not set(seen) & set(rec["items"])
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["state"] in ("firing", "resolved") for line in lines)
    assert summary["alerts_delivered"] == len(lines)
    for png in summary["plots"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ALERT FIRING" in out.output and "fold-in" in out.output and "summary:" in out.output
    # The job ids it prints are the ones `ea jobs ID` takes.
    printed = re.findall(r"^job (\S+) demo-node2vec: waiting", out.output, re.M)
    shown = CliRunner().invoke(main, ["jobs", printed[0]])
    assert shown.exit_code == 0 and "state: SUCCESS" in shown.output, shown.output
