#!/usr/bin/env python3
"""Where the time of a weight-streaming GEMV launch goes, from NIBBLE_GEMV_TRACE's per-block records.

    NIBBLE_GEMV_TRACE=/tmp/gemv.bin nibble bench --model DIR --batch 1 ...
    tools/gemv_timeline.py /tmp/gemv.bin [--skip-first N]

Each record (linear_stream.h, cuda_linear_stream_trace_begin) is one block: its start (%globaltimer, ns),
its end, and SM cycles from its start to the return of its wait for the previous kernel, to x staged, to
warp 0's first weights and to warp 0's last item. Launches are told apart by their shape (k, tiles, parts,
SwiGLU) and by block index (each once per launch). Per shape, the median over launches of: when (relative to the launch's first block start, in us)
the last block started, the wait returned (median and last block), x was staged, warp 0's first weights
were in, warp 0's items were done, and the last block ended; and the time from the previous traced
launch's end to this one's first start.
"""
import statistics
import struct
import sys

WORDS = 16


def load(path):
    raw = open(path, "rb").read()
    n = len(raw) // (4 * WORDS)
    recs = []
    for i in range(n):
        w = struct.unpack_from("<%dI" % WORDS, raw, i * 4 * WORDS)
        k, tiles, bg, smid = w[0], w[1], w[2], w[3]
        t0 = w[4] | w[5] << 32
        t1 = w[6] | w[7] << 32
        if t0 == 0 or t1 < t0:
            continue
        recs.append(
            {
                "k": k,
                "tiles": tiles,
                "block": bg & 0xFFFF,
                "grid": bg >> 16,
                "sm": smid,
                "t0": t0,
                "t1": t1,
                "c": w[8:12],
                "cend": w[12],
                "mine": w[13],
                "fmt": w[14] & 0xF,
                "m": (w[14] >> 4) & 0xFF,
                "half": (w[14] >> 12) & 1,
                "parts": w[14] >> 16,
                "swiglu": w[15],
            }
        )
    return recs


def med(v):
    return statistics.median(v) if v else float("nan")


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    skip = 0
    if "--skip-first" in args:
        i = args.index("--skip-first")
        skip = int(args[i + 1])
        del args[i : i + 2]
    recs = load(args[0])
    if not recs:
        print("no records")
        return 1
    # SM clock (cycles per ns) from blocks that ran long enough for the 32-ns timer.
    rates = [r["cend"] / (r["t1"] - r["t0"]) for r in recs if r["t1"] - r["t0"] > 2000 and r["cend"] > 0]
    ghz = med(rates)
    print(f"{len(recs)} block records, SM clock {ghz:.3f} GHz")

    # Launches: per shape, in start order; a launch holds each block index once, so a block index seen
    # again (or a start 20 us after the previous block's) begins the next launch of that shape.
    shapes = {}
    for r in recs:
        shapes.setdefault((r["k"], r["tiles"], r["parts"], r["swiglu"], r["fmt"], r["m"]), []).append(r)
    launches = []
    for key, rs in shapes.items():
        rs.sort(key=lambda r: r["t0"])
        cur, seen = [rs[0]], {rs[0]["block"]}
        for r in rs[1:]:
            if r["block"] in seen or r["t0"] - cur[-1]["t0"] > 20000:
                launches.append((key, cur))
                cur, seen = [], set()
            cur.append(r)
            seen.add(r["block"])
        launches.append((key, cur))
    launches.sort(key=lambda kl: min(r["t0"] for r in kl[1]))
    launches = launches[skip:]
    ends = [(min(r["t0"] for r in l), max(r["t1"] for r in l)) for _, l in launches]

    def rel(r, i, l0):  # absolute time of phase i of block r, us after l0
        return (r["t0"] - l0) / 1000 + r["c"][i] / ghz / 1000

    rows = {}
    for idx, (key, l) in enumerate(launches):
        grid = l[0]["grid"]
        if len(l) < grid:  # the ring cut this launch
            continue
        l0 = ends[idx][0]
        prev_end = max((e for s, e in ends[:idx] if e <= l0 + 20000), default=None)
        d = rows.setdefault(key, {"n": 0, "grid": grid, "mine": max(r["mine"] for r in l)})
        d["n"] += 1
        vals = {
            "start_max": max((r["t0"] - l0) / 1000 for r in l),
            "wait_med": med([rel(r, 0, l0) for r in l]),
            "wait_max": max(rel(r, 0, l0) for r in l),
            "staged_med": med([rel(r, 1, l0) for r in l]),
            "first_med": med([rel(r, 2, l0) for r in l]),
            "done_med": med([rel(r, 3, l0) for r in l]),
            "done_max": max(rel(r, 3, l0) for r in l),
            "end_max": max((r["t1"] - l0) / 1000 for r in l),
            "gap_prev": (l0 - prev_end) / 1000 if prev_end is not None else float("nan"),
        }
        for k, v in vals.items():
            d.setdefault(k, []).append(v)
    cols = [
        "start_max",
        "wait_med",
        "wait_max",
        "staged_med",
        "first_med",
        "done_med",
        "done_max",
        "end_max",
        "gap_prev",
    ]
    print("us after each launch's first block start (medians over launches); gap_prev: since the previous")
    print("traced launch ended (negative: overlapped)")
    hdr = f"{'k':>6} {'tiles':>6} {'parts':>5} {'swi':>3} {'grid':>4} {'tl/bk':>5} {'n':>4} " + " ".join(
        f"{c:>10}" for c in cols
    )
    print(hdr)
    for key, d in sorted(rows.items(), key=lambda kv: -kv[1]["n"]):
        k, tiles, parts, swi, fmt, m = key
        line = f"{k:>6} {tiles:>6} {parts:>5} {swi:>3} {d['grid']:>4} {d['mine']:>5} {d['n']:>4} "
        line += " ".join(f"{med(d[c]):>10.2f}" for c in cols)
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
