"""``make bench``: run every ``bench/*.py`` and write one table of their rows.

Each script follows ``bench/README.md``: run with ``--json``, it prints its rows as a JSON array
on the last line of standard output. The table goes to ``bench/results.md`` and
``bench/results.json`` and replaces the marked section of the project README, with the machine
and time each bench ran at. ``python bench NAME ...`` (``make bench BENCH="NAME ..."``) runs only
those and keeps the other benches' rows from ``bench/results.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
TIMEOUT_SECONDS = 900


def machine() -> dict[str, Any]:
    """Cores, CPU model, load and Python of this machine."""
    cpuinfo = Path("/proc/cpuinfo")
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "load": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_script(script: Path) -> list[dict[str, Any]]:
    """The rows of one benchmark script; raises if it fails or prints no rows."""
    print(f"== {script.name}", file=sys.stderr, flush=True)
    done = subprocess.run(
        [sys.executable, str(script), "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    sys.stderr.write("\n".join([*lines[:-1], done.stderr]))
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{script.name} exited with {done.returncode}")
    rows: list[dict[str, Any]] = json.loads(lines[-1])
    return [{"bench": script.stem, **row} for row in rows]


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.2g}"


def markdown(rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> str:
    """The table, with the machine and time each bench ran at."""
    by_host: dict[str, list[str]] = {}
    for bench, host in runs.items():
        ran = (
            f"Ran {host['date']} on {host['nproc']} cores of {host['cpu']} (load average "
            f"{host['load']} when it ended), Python {host['python']}"
        )
        by_host.setdefault(ran, []).append(bench)
    lines = [f"{ran}: {', '.join(benches)}." for ran, benches in by_host.items()]
    lines += [
        "",
        "| bench | figure | value | baseline (same run) | ratio | goal |",
        "|---|---|---:|---|---:|---|",
    ]
    for row in rows:
        goal = row["goal"] or ""
        if row["goal"]:
            goal += " (met)" if row["met"] else " (**not met**)"
        lines.append(
            f"| {row['bench']} | {row['name']} | {_number(row['value'])} {row['unit']} "
            f"| {row['baseline_name']}: {_number(row['baseline'])} {row['unit']} "
            f"| {_number(row['ratio'])}x | {goal} |"
        )
    return "\n".join(lines) + "\n"


def update_readme(table: str) -> None:
    """Replace the README's marked benchmark section with ``table``."""
    text = README.read_text(encoding="utf-8")
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise RuntimeError(f"{README} has no {START} ... {END} section")
    README.write_text(f"{head}{START}\n{table}{END}{tail}", encoding="utf-8")


def previous() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The rows and runs of ``bench/results.json`` (none if there is no such file)."""
    path = BENCH_DIR / "results.json"
    if not path.exists():
        return [], {}
    results = json.loads(path.read_text(encoding="utf-8"))
    rows: list[dict[str, Any]] = results["rows"]
    return rows, results["runs"]


def main() -> int:
    scripts = sorted(p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_"))
    chosen = set(sys.argv[1:])
    unknown = chosen - {s.stem for s in scripts}
    if unknown:
        print(f"no such bench: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    rows, runs = previous() if chosen else ([], {})
    ran: list[str] = []
    failed = []
    for script in scripts:
        if chosen and script.stem not in chosen:
            continue
        try:
            measured = run_script(script)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            failed.append(f"{script.name}: {exc}")
            continue
        rows = [r for r in rows if r["bench"] != script.stem] + measured
        ran.append(script.stem)
    host = machine()
    runs.update(dict.fromkeys(ran, host))
    order = [s.stem for s in scripts]
    rows.sort(key=lambda r: order.index(r["bench"]))
    runs = {bench: runs[bench] for bench in order if bench in runs}
    table = markdown(rows, runs)
    (BENCH_DIR / "results.json").write_text(
        json.dumps({"runs": runs, "rows": rows}, indent=2) + "\n", encoding="utf-8"
    )
    (BENCH_DIR / "results.md").write_text(table, encoding="utf-8")
    if not failed:
        update_readme(table)
    print(table)
    for problem in failed:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
