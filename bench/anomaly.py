"""Benchmark: the anomaly detector on series no choice looked at (held out), beside its in-sample figures.

Every file goes through ``ea detect``'s function (:func:`workers.detection.detect_file`: the same reader,
detector and incident machine, its own alerts in ``is_anomaly``), trained on the file's probationary
prefix (``min(15%, 750)`` rows, NAB's rule), and is scored by ``../shared/bench/anomaly_score.py``
(NAB-like standard profile). Settings are chosen from a small grid of the detector's public settings
(:data:`GRID`, or ``--grid``) by the scorer on training files only:

* **leave one category out** over the 35 shared NAB files: each category is scored with the settings
  that scored best on the other three; the pooled row scores all 35 files, each with its own fold's choice;
* **across corpora**: settings chosen on all of NAB, scored on ``beyond-nab`` per category (AIOps KPIs,
  NASA SMAP, NASA MSL, UCR) and pooled; and the reverse (chosen on ``beyond-nab``, scored on NAB).

Beside each held-out figure: the **in-sample** figure (the grid's best on the scored files themselves:
what a table tuned on its test set shows), the shipped defaults (chosen by the developers on NAB: in-sample
on NAB), and the baselines (``--baselines``; fixed rules, nothing chosen). Then issue 26's item 3: the
``score`` column thresholded once per corpus by NAB's threshold search (the scorer's ``--optimize``, NAB's
board's protocol, in-sample by construction) against the detector's own alerts, defaults.

Outputs of ``ea detect`` are cached per (file, settings, code version) under ``--cache`` (default
``$EA_BENCH_CACHE`` or ``~/.cache/ea-bench/anomaly``), so a rerun of unchanged code only scores. Speed:
``bench/anomaly_speed.py``.

Usage: nice -n 5 .venv/bin/python bench/anomaly.py [--grid JSON] [--baselines zscore,knncad] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._anomaly_data import (  # noqa: E402
    CORPUS_NAMES,
    Corpus,
    aggregate,
    file_stats,
    load_corpora,
    score,
    threshold_search,
)
from bench._anomaly_runs import (  # noqa: E402
    check_candidate,
    code_version,
    default_cache,
    describe,
    refused,
    result_path,
    run_all,
    settings_id,
)
from bench._common import RESULTS, machine  # noqa: E402

#: The candidates of every choice: the defaults first (ties keep the earlier candidate), then a step each
#: way in sensitivity (tail probability and effect size together), a longer window, a shorter cooldown.
GRID: list[dict[str, Any]] = [
    {},
    {"alpha": 3e-3, "effect": 2.0},
    {"alpha": 1e-4, "effect": 4.0},
    {"window": 32},
    {"cooldown_points": 100},
]
BASELINES = ("zscore", "knncad")


class Bench:
    """The corpora, the candidates, the cache, and the scorer's figures: each file's share taken once
    (:func:`bench._anomaly_data.file_stats`, in a pool), any set of files summed from them."""

    def __init__(self, corpora: dict[str, Corpus], grid: list[dict[str, Any]], cache: Path, picks: list[dict]) -> None:
        self.corpora, self.grid, self.cache = corpora, grid, cache
        tasks = {(c.name, k, settings_id(p)): (c.data / k, c.windows[k], result_path(cache, c, p, k))
                 for c in corpora.values() for p in picks for k in c.keys}
        with ProcessPoolExecutor(max_workers=2) as pool:
            futures = {t: pool.submit(file_stats, *args, cache) for t, args in tasks.items()}
            self.stats = {t: f.result() for t, f in futures.items()}

    def figures(self, corpus: Corpus, keys: list[str], pick: Any) -> dict:
        """The scorer's figures of ``keys`` with ``pick`` (one candidate, or ``key -> candidate``)."""
        return aggregate([self.stats[(corpus.name, k, settings_id(pick.get(k, pick)))] for k in keys])

    def check(self, pick: dict[str, Any]) -> list[str]:
        """The scorer run whole on each corpus with ``pick``, against the sums: SystemExit when they differ."""
        lines = []
        with ThreadPoolExecutor(max_workers=2) as pool:
            whole = {n: pool.submit(score, c, {k: result_path(self.cache, c, pick, k) for k in c.keys}, False,
                                    self.cache) for n, c in self.corpora.items()}
        for name, corpus in self.corpora.items():
            ours, theirs = self.figures(corpus, corpus.keys, pick), whole[name].result()
            same = all(ours[f] == theirs[f] for f in ("nab_like", "detected", "false_alarm_runs", "windows",
                                                      "false_alarm_rows_per_1k_clean"))
            if not same:
                raise SystemExit(f"the per-file sums disagree with the scorer on {name}: {ours} against {theirs}")
            lines.append(f"{CORPUS_NAMES[name]} {theirs['nab_like']:.2f}")
        return lines

    def choose(self, corpus: Corpus, keys: list[str]) -> dict[str, Any]:
        """The candidate with the best NAB-like on ``keys`` (the earlier one on a tie)."""
        best = max(range(len(self.grid)), key=lambda i: (self.figures(corpus, keys, self.grid[i])["nab_like"], -i))
        return self.grid[best]

    def in_sample(self, corpus: Corpus, keys: list[str]) -> tuple[dict[str, Any], dict]:
        """The grid's best candidate on ``keys`` themselves and its figures (in-sample)."""
        if corpus.n_windows(keys) == 0:  # no windows: the fewest false alarms is the best
            best = min(self.grid, key=lambda c: self.figures(corpus, keys, c)["false_alarm_rows_per_1k_clean"])
        else:
            best = self.choose(corpus, keys)
        return best, self.figures(corpus, keys, best)


def held_out_rows(bench: Bench, baselines: list[str]) -> list[dict[str, Any]]:
    """One row per scored set: leave-one-category-out over NAB, then each corpus's choice scored on the other."""
    rows = []
    nab = bench.corpora["nab"]
    folds = {cat: bench.choose(nab, [k for k in nab.keys if not k.startswith(cat + "/")]) for cat in nab.categories()}
    for cat, chosen in folds.items():
        rows.append(_row(bench, "leave one NAB category out", nab, cat, nab.in_category(cat), chosen,
                         f"NAB without {cat}", baselines))
    pick = {k: folds[k.split("/", 1)[0]] for k in nab.keys}
    rows.append(_row(bench, "leave one NAB category out", nab, "all 35 (each by its fold)", nab.keys, pick,
                     "NAB without the file's category", baselines))
    for src, dst in (("nab", "beyond"), ("beyond", "nab")):
        if src not in bench.corpora or dst not in bench.corpora:
            continue
        source, target = bench.corpora[src], bench.corpora[dst]
        chosen = bench.choose(source, source.keys)
        how = f"chosen on {CORPUS_NAMES[src]}, scored on {CORPUS_NAMES[dst]}"
        for cat in target.categories():
            rows.append(_row(bench, how, target, cat, target.in_category(cat), chosen, f"all of {CORPUS_NAMES[src]}",
                             baselines))
        rows.append(_row(bench, how, target, f"all {len(target.keys)}", target.keys, chosen,
                         f"all of {CORPUS_NAMES[src]}", baselines))
    return rows


def _row(bench: Bench, protocol: str, corpus: Corpus, name: str, keys: list[str], pick: Any, chosen_on: str,
         baselines: list[str]) -> dict[str, Any]:
    held = bench.figures(corpus, keys, pick)
    best, inside = bench.in_sample(corpus, keys)
    mixed = isinstance(next(iter(pick.values()), None), dict)
    chosen = sorted({describe(pick[k]) for k in keys}) if mixed else [describe(pick)]
    refusals = sorted({k for k in keys if refused(bench.cache, corpus, pick[k] if mixed else pick, [k])})
    return {"protocol": protocol, "corpus": corpus.name, "set": name, "files": len(keys),
            "windows": corpus.n_windows(keys), "chosen_on": chosen_on, "chosen": chosen, "held_out": held,
            "in_sample_settings": describe(best), "in_sample": inside, "refused": refusals,
            "defaults": bench.figures(corpus, keys, {}),
            "baselines": {b: bench.figures(corpus, keys, {"baseline": b}) for b in baselines}}


def score_vs_alerts(bench: Bench) -> list[dict[str, Any]]:
    """Per corpus, the defaults: own alerts against the ``score`` column at NAB's single best threshold (the
    scorer's search, :func:`bench._anomaly_data.threshold_search`, two corpora at a time)."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        runs = {n: pool.submit(threshold_search, c, {k: result_path(bench.cache, c, {}, k) for k in c.keys})
                for n, c in bench.corpora.items()}
        return [{"corpus": n, "files": len(c.keys), **bench.figures(c, c.keys, {}), **runs[n].result()}
                for n, c in bench.corpora.items()]


def _nab(fig: dict) -> str:
    if "nab_like" not in fig:
        return f"– ({fig['false_alarm_rows_per_1k_clean']:.3f} FA/1k)"
    return f"{fig['nab_like']:.1f}"


def _events(fig: dict) -> str:
    if "detected" not in fig:
        return "–"
    return f"{fig['detected']}/{fig['windows']}, {fig['false_alarm_runs']}"


def render(rows: list[dict[str, Any]], versus: list[dict[str, Any]], baselines: list[str], head: str) -> str:
    """The markdown tables."""
    out = [head, "", "### Held out: NAB-like of settings chosen without the scored files", "",
           "| protocol | scored set | files | settings chosen on | chosen | **held-out NAB-like** | detected/windows, "
           "false-alarm runs | in-sample (grid's best on the set itself) | defaults | "
           + " | ".join(baselines) + " |", "|" + "---|" * (9 + len(baselines))]
    for r in rows:
        cells = [r["protocol"], r["set"], str(r["files"]), r["chosen_on"], "; ".join(r["chosen"]),
                 f"**{_nab(r['held_out'])}**", _events(r["held_out"]),
                 f"{_nab(r['in_sample'])} *in-sample* ({r['in_sample_settings']})",
                 _nab(r["defaults"]) + (" *in-sample*" if r["corpus"] == "nab" else ""),
                 *[_nab(r["baselines"][b]) for b in baselines]]
        out.append("| " + " | ".join(cells) + " |")
    notes = [f"- refused (too short for the settings; count as raising nothing): {r['set']}: {', '.join(r['refused'])}"
             for r in rows if r["refused"]]
    out += ["", *notes, "", "### The `score` column at NAB's best single threshold per corpus (item 3, defaults)", "",
            "| corpus | files | own alerts (`is_anomaly`) | `score` at the corpus's best threshold *in-sample* | gap |",
            "|---|---|---|---|---|"]
    for v in versus:
        gap = v["nab_like_best_threshold"] - v["nab_like"]
        out.append(f"| {CORPUS_NAMES[v['corpus']]} | {v['files']} | {v['nab_like']:.1f} | "
                   f"{v['nab_like_best_threshold']:.1f} | {gap:+.1f} |")
    return "\n".join(out) + "\n"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default=None, help="the candidates: a JSON list of settings objects (detector "
                    "settings, `ea detect --param` keys, and the incident machine's *_points), or a file holding one")
    ap.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated, of zscore, knncad, "
                    "knn-frozen, stumpy ('' for none)")
    ap.add_argument("--workers", type=int, default=2, help="ea detect processes")
    ap.add_argument("--cache", type=Path, default=None, help="cache folder (default $EA_BENCH_CACHE or "
                    "~/.cache/ea-bench/anomaly)")
    ap.add_argument("--no-optimize", action="store_true", help="skip item 3's threshold search (slow)")
    args = ap.parse_args()
    grid = GRID
    if args.grid:
        text = Path(args.grid).read_text() if Path(args.grid).is_file() else args.grid
        grid = json.loads(text)
    accepted = []
    for cand in grid:
        why = check_candidate(cand)
        print(f"candidate {describe(cand)}: {'skipped, ' + why if why else 'ok'}", file=sys.stderr)
        if not why:
            accepted.append(cand)
    if not accepted:
        raise SystemExit("no candidate settings the detector accepts (see above)")
    baselines = [b for b in args.baselines.split(",") if b]
    version = f"{code_version()} (baselines {code_version(baseline=True)})"
    cache = args.cache or default_cache()
    corpora = load_corpora()
    start_load = _load()
    # The defaults are always run: the table's defaults column, the scorer check and item 3 use them.
    picks = [*accepted, *([] if {} in accepted else [{}]), *[{"baseline": b} for b in baselines]]
    jobs = [(c, cand) for c in corpora.values() for cand in picks]
    spent = run_all(jobs, cache, workers=args.workers)
    bench = Bench(corpora, accepted, cache, picks)
    checked = bench.check({})
    rows = held_out_rows(bench, baselines)
    versus = [] if args.no_optimize else score_vs_alerts(bench)
    cpu = ", ".join(f"{describe(c)} {spent.get(settings_id(c), 0.0):.0f}" for c in accepted)
    head = (f"{machine()}; code version {version}; {start_load} at the start, {_load()} at the end; "
            f"ea detect CPU seconds spent now (0: cached): {cpu or 'all cached'}. The scorer run whole on the "
            f"defaults agrees with the per-file sums ({', '.join(checked)}). Grid: "
            + "; ".join(describe(c) for c in accepted) + ".")
    text = render(rows, versus, baselines, head)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "anomaly.md").write_text(text)
    (RESULTS / "anomaly.json").write_text(json.dumps({"rows": rows, "score_vs_alerts": versus, "version": version,
                                                      "grid": accepted}, indent=1))


if __name__ == "__main__":
    main()
