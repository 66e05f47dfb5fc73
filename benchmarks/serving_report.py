"""The serving benchmark's report: the table, the ratios and the targets of ``benchmarks/serving.py``'s run.

:func:`print_report` prints, from the run's results (``{(server, load): {"req_s", "p99_ms", "shed", ...}}``;
servers ``kfloop``, ``naive``, ``mlserver``, ``bentoml``, ``nolog``), one Markdown table (a server that did
not run or does not serve a load is ``-``), the in-process limit, the prediction log's bytes per row and
each target with ``met`` / ``MISSED``. A peer is compared on the load whose body carries the same thing
as its own: MLServer's V2 JSON with kfloop's V2 JSON (the same bytes), BentoML's ``{"rows": [...]}`` with
kfloop's V1 ``instances`` (the same row objects).
"""

from __future__ import annotations

#: Loads of one row per request (req/s and p99; the others are 1,000 rows: rows/s).
ONE_ROW = ("1row", "v2one", "bin1")
COLUMNS = ("kfloop", "naive", "mlserver", "bentoml", "nolog")
#: Each peer's 1-row and 1,000-row loads, and kfloop's load of the same body format.
PEER_LOADS = {"mlserver": ("v2one", "v2big"), "bentoml": ("1row", "v1big")}
_HEAD = "| load | kfloop (log on) | naive kserve | MLServer 1.7.1 | BentoML 1.4.40 | kfloop, log off |"
_RULE = "|---|---|---|---|---|---|"


def _cell(results: dict, name: str, load: str, inproc: float) -> str:
    r = results.get((name, load))
    if r is None:
        return "-"
    if load in ONE_ROW:
        text = f"{r['req_s']:,.0f} req/s, p99 {r['p99_ms']:.1f} ms"
    else:
        text = f"{r['req_s'] * 1000:,.0f} rows/s"
        if name in ("kfloop", "nolog") and load in ("v2big", "binbig", "gbig"):
            text += f" ({r['req_s'] * 1000 / inproc:.0%} of in-process"
            text += f", p99 {r['p99_ms']:.1f} ms)" if load == "gbig" else ")"
    if r.get("shed"):
        text += f", {r['shed']} {'shed' if load == 'gbig' else 'non-2xx'}"
    return text


def _row(label: str, load: str, results: dict, inproc: float) -> str:
    cells = [_cell(results, name, load, inproc) for name in COLUMNS]
    k, n = results.get(("kfloop", load)), results.get(("naive", load))
    if k and n and load not in ONE_ROW:
        cells[0] += f" ({k['req_s'] / n['req_s']:.2f}x naive)"
    return f"| {label} | " + " | ".join(cells) + " |"


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _peer_targets(results: dict) -> None:
    """kfloop vs the best peer (its same-format load) at both points, and vs naive at 1,000 rows."""
    ran = [p for p in PEER_LOADS if (p, PEER_LOADS[p][0]) in results]
    if not ran:
        print("  peers: none ran (no peer env; `make bench-peers-env`)")
        return
    for i, (label, need, unit) in enumerate((("1-row, 8 connections", 1.5, "req/s"),
                                             ("1,000-row JSON, 2 connections", 1.2, "rows/s"))):  # fmt: skip
        scale = 1 if i == 0 else 1000
        ratios = {}
        for p in ran:
            peer, mine = results[(p, PEER_LOADS[p][i])], results[("kfloop", PEER_LOADS[p][i])]
            ratios[p] = mine["req_s"] / peer["req_s"]
        best = max(ran, key=lambda p: results[(p, PEER_LOADS[p][i])]["req_s"])
        peer, mine = results[(best, PEER_LOADS[best][i])], results[("kfloop", PEER_LOADS[best][i])]
        each = ", ".join(f"{ratios[p]:.2f}x {p}" for p in ran)
        line = (
            f"  {label}: best peer {best} {peer['req_s'] * scale:,.0f} {unit} (p99 {peer['p99_ms']:.1f} ms); "
            f"kfloop {mine['req_s'] * scale:,.0f} {unit} (p99 {mine['p99_ms']:.1f} ms) = {ratios[best]:.2f}x "
            f">= {need}x: {_verdict(ratios[best] >= need)}"
        )
        if i == 0:
            line += f"; p99 <= the peer's: {_verdict(mine['p99_ms'] <= peer['p99_ms'])}"
        print(f"{line}  (kfloop vs each peer: {each})")
    kb, nb = results[("kfloop", "v1big")], results[("naive", "v1big")]
    t = kb["req_s"] / nb["req_s"]
    v2 = results[("kfloop", "v2big")]["req_s"] / nb["req_s"]
    print(
        f"  1,000-row JSON vs naive (V1, the naive server's only protocol): {t:.2f}x >= 1.2x: {_verdict(t >= 1.2)}"
        f"  (kfloop's V2 JSON vs naive's V1: {v2:.2f}x)"
    )


def print_report(results: dict, inproc: float, log_rows: int, log_bytes: int, grpc_only: bool) -> None:
    """Prints the run's table, the in-process limit, the log's size and the targets."""
    grpc = "1,000-row V2 gRPC (tritonclient.grpc, another process), 2 connections"
    if grpc_only:
        print("\n## serving benchmark, the V2 gRPC point (loopback, same SavedModel, same run)\n")
        print(_HEAD + "\n" + _RULE + "\n" + _row(grpc, "gbig", results, inproc))
        print(f"\nin-process limit of the same SavedModel at batch 1,000: {inproc:,.0f} rows/s")
    else:
        print("\n## serving benchmark (loopback, same SavedModel, same run)\n")
        print(_HEAD + "\n" + _RULE)
        for label, load in (
            ('1-row V1 JSON, 8 connections (BentoML: the same rows as `{"rows": [...]}`)', "1row"),
            ("1-row V2 JSON, 8 connections (MLServer: the same bodies)", "v2one"),
            ('1,000-row V1 JSON, 2 connections (BentoML: `{"rows": [...]}`)', "v1big"),
            ("1,000-row V2 JSON, 2 connections (MLServer: the same bodies)", "v2big"),
            ("1-row V2 binary, 8 connections", "bin1"),
            ("1,000-row V2 binary, 2 connections", "binbig"),
            (grpc, "gbig"),
        ):
            print(_row(label, load, results, inproc))
        print(f"\nin-process limit of the same SavedModel at batch 1,000: {inproc:,.0f} rows/s")
        if log_rows:
            print(
                f"prediction log: {log_rows:,} rows in {log_bytes:,} bytes = {log_bytes / log_rows:.1f} bytes/row"
            )
    print("\ntargets:")
    share = {load: results[("kfloop", load)]["req_s"] * 1000 / inproc for load in ("v2big", "binbig", "gbig")
             if ("kfloop", load) in results}  # fmt: skip
    if not grpc_only:
        k1, n1 = results[("kfloop", "1row")], results[("naive", "1row")]
        t1 = k1["req_s"] / n1["req_s"]
        print(
            f"  1-row V1 c=8: >= 3x naive throughput: {t1:.2f}x {_verdict(t1 >= 3)}; p99 <= naive p99: "
            f"{k1['p99_ms']:.1f} vs {n1['p99_ms']:.1f} ms {_verdict(k1['p99_ms'] <= n1['p99_ms'])}"
        )
        t2 = results[("kfloop", "v1big")]["req_s"] / results[("naive", "v1big")]["req_s"]
        print(f"  1,000-row V1: >= 1.5x naive rows/s: {t2:.2f}x {_verdict(t2 >= 1.5)}")
        print(
            f"  1,000-row V2: >= 25% of in-process: {share['v2big']:.0%} {_verdict(share['v2big'] >= 0.25)}"
        )
        print(
            f"  1,000-row V2 binary: >= 50% of in-process: {share['binbig']:.0%} {_verdict(share['binbig'] >= 0.5)}"
        )
    print(f"  1,000-row V2 gRPC: >= 40% of in-process: {share['gbig']:.0%} {_verdict(share['gbig'] >= 0.4)}")
    if not grpc_only:
        if log_rows:
            size = log_bytes / log_rows
            print(f"  log size <= 80 bytes/row: {size:.1f} {_verdict(size <= 80)}")
        print("peers (kfloop with the prediction log on):")
        _peer_targets(results)
