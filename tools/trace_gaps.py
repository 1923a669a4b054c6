#!/usr/bin/env python3
"""Where a decode step's GPU time goes, from a kernel timeline written by bench/kernel_trace.cpp.

    python3 tools/trace_gaps.py TRACE.csv [--err STDERR_FILE] [--label TEXT] [--split-us 50] [--warmup 2]
                                [--min-len 8] [--step-len N]

Steps: the records (kernels, memcpys, memsets, in start order) are cut into runs wherever the GPU idles
for more than --split-us (the next start minus the latest end so far: nothing running); the decode steps
are the runs of the length, among lengths seen 3+ times in runs of at least --min-len records, whose runs
hold the most records together (a decode step is the longest run that repeats; ties: the length seen
last, decode being the end of a `nibble bench` run), or of --step-len; the first --warmup of them are
skipped (eager, then graph capture).

Printed, per kept step:
  * the kernel sequence of the step with the median span: index, name (namespaces dropped, template
    arguments kept), grid, duration and the gap before it (start minus the previous record's end,
    negative where programmatic dependent launch overlaps them);
  * the median span (first start to last end), the median sum of durations, their difference (the time
    between kernels; negative with overlap), and the median idle time (nothing running);
  * the time per step by short name ("(anonymous namespace)::", "void ", template arguments and
    parameters dropped), then by name with template arguments (70 characters) and grid
    (stream_kernel<0,1,1> and <2,1,0> are different kernels): count, mean us, total us per step;
  * what each record adds to the span (its end minus the latest earlier end: the critical path under
    programmatic dependent launch), by name and grid, and per layer: the longest stretch of the median
    step whose records repeat with one period (a decoder layer's kernels) and the mean each position of
    the period adds, so that kernels of one name and grid (the q/k/v, o, gate/up and down GEMVs) are
    told apart;
  * the gaps grouped by (previous, next) kernel pair, top 15 by total per step.
The sequence comes first: a long report is read from its end (the device tool shows the last 12,000
characters), so the summaries are the part that survives.
If the CSV is missing or empty, the last lines of --err (the traced run's stderr) say why.
"""

import argparse
import collections
import csv
import os
import statistics
import sys


def base_and_args(name):
    """name without "(anonymous namespace)::", a leading "void " and the parameter list, split into the
    base (up to the first '<' or '(') and the template arguments ('<...>' with ", " compressed to ",")."""
    n = name.replace('(anonymous namespace)::', '')
    if n.startswith('void '):
        n = n[5:]
    depth = 0
    end = len(n)
    cut = None
    for i, c in enumerate(n):
        if c == '<':
            if cut is None:
                cut = i
            depth += 1
        elif c == '>':
            depth -= 1
        elif c == '(' and depth == 0:
            end = i
            break
    if cut is None or cut > end:
        cut = end
    return n[:cut], n[cut:end].replace(', ', ',')


def short_name(name):
    return base_and_args(name)[0]


def detail_name(name, width=70):
    b, a = base_and_args(name)
    return (b + a)[:width]


def bare_name(name, width):
    """The name with template arguments, namespaces dropped: for the sequence and the pairs."""
    b, a = base_and_args(name)
    return (b.rsplit('::', 1)[-1] + a)[:width]


def grid_text(r):
    g = r['grid']
    if g == (0, 0, 0):
        return '-'
    return 'x'.join(str(v) for v in g)


def read_trace(path):
    rows = []
    with open(path, newline='', errors='replace') as f:
        for d in csv.DictReader(f):
            try:
                rows.append({
                    'start': int(d['start_ns']),
                    'end': int(d['end_ns']),
                    'grid': (int(d['grid_x']), int(d['grid_y']), int(d['grid_z'])),
                    'stream': int(d['stream_id']),
                    'graph': int(d['graph_id']),
                    'name': d['name'],
                })
            except (KeyError, ValueError, TypeError):
                continue  # a truncated last line
    rows.sort(key=lambda r: r['start'])
    return rows


def split_runs(rows, split_ns):
    runs, cur, latest_end = [], [], None
    for r in rows:
        if cur and r['start'] - latest_end > split_ns:
            runs.append(cur)
            cur = []
        if not cur:
            latest_end = r['end']
        cur.append(r)
        latest_end = max(latest_end, r['end'])
    if cur:
        runs.append(cur)
    return runs


def busy_ns(step):
    """Union of the records' intervals: the time anything runs."""
    total, cur_s, cur_e = 0, None, None
    for r in step:
        if cur_e is None or r['start'] > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = r['start'], r['end']
        else:
            cur_e = max(cur_e, r['end'])
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def span_ns(step):
    return max(r['end'] for r in step) - step[0]['start']


def tail(path, n=15):
    if not path or not os.path.exists(path):
        return '(no stderr file)'
    lines = open(path, errors='replace').read().splitlines()
    return '\n'.join(lines[-n:]) if lines else '(stderr empty)'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('csv')
    ap.add_argument('--err', help="the traced run's stderr, shown when there is no trace")
    ap.add_argument('--label', default='')
    ap.add_argument('--split-us', type=float, default=50.0)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--min-len', type=int, default=8)
    ap.add_argument('--step-len', type=int, default=0)
    a = ap.parse_args()
    label = a.label + ': ' if a.label else ''

    if not os.path.exists(a.csv):
        print('%sno trace: %s is missing; the run\'s stderr ends:\n%s' % (label, a.csv, tail(a.err)))
        return 1
    rows = read_trace(a.csv)
    if not rows:
        print('%sno records in %s; the run\'s stderr ends:\n%s' % (label, a.csv, tail(a.err)))
        return 1

    runs = split_runs(rows, a.split_us * 1e3)
    lengths = collections.Counter(len(r) for r in runs)
    last_seen = {len(r): i for i, r in enumerate(runs)}
    hist = ', '.join('%d: %d' % (n, c) for n, c in sorted(lengths.items(), key=lambda x: (-x[1], -x[0]))[:8])
    if a.step_len:
        step_len = a.step_len
    else:
        cands = [n for n in lengths if n >= a.min_len and lengths[n] >= 3] or \
            [n for n in lengths if n >= a.min_len]
        if not cands:
            print('%s%d records, %d runs (split at %.0f us idle); no run of %d+ records. Run lengths '
                  '(length: count): %s' % (label, len(rows), len(runs), a.split_us, a.min_len, hist))
            return 1
        step_len = max(cands, key=lambda n: (n * lengths[n], last_seen[n]))
    steps = [r for r in runs if len(r) == step_len]
    if not steps:
        print('%sno run of %d records (split at %.0f us idle). Run lengths (length: count): %s' %
              (label, step_len, a.split_us, hist))
        return 1
    kept = steps[a.warmup:] if len(steps) > a.warmup else steps
    ns = len(kept)

    # The median step's sequence.
    med = sorted(kept, key=span_ns)[ns // 2]
    print('%sthe median decode step (span %.1f us), record by record: index, name, grid, duration us, '
          'gap before it us' % (label, span_ns(med) / 1e3))
    prev = None
    for i, r in enumerate(med):
        gap = '' if prev is None else '%+.2f' % ((r['start'] - prev['end']) / 1e3)
        print('%4d %-46s %-11s %7.2f %7s' % (i, bare_name(r['name'], 46), grid_text(r),
                                              (r['end'] - r['start']) / 1e3, gap))
        prev = r
    print()

    # Steps.
    spans = [span_ns(s) for s in kept]
    sums = [sum(r['end'] - r['start'] for r in s) for s in kept]
    idles = [span_ns(s) - busy_ns(s) for s in kept]
    print('%s%d records, %d runs (split at %.0f us idle); run lengths (length: count): %s' %
          (label, len(rows), len(runs), a.split_us, hist))
    where = [i for i, r in enumerate(runs) if len(r) == step_len]
    graphs = ','.join(str(g) for g in sorted({r['graph'] for s in kept for r in s}))
    print('decode steps: %d runs of %d records (runs %d..%d of %d), %d skipped as warm-up, %d kept; '
          'graph ids %s' % (len(steps), step_len, where[0], where[-1], len(runs), len(steps) - ns, ns,
                            graphs[:60]))
    print('per step (median): span %.1f us, sum of durations %.1f us, between kernels %.1f us '
          '(span - sum), idle %.1f us (nothing running); span min %.1f max %.1f us' %
          (statistics.median(spans) / 1e3, statistics.median(sums) / 1e3,
           (statistics.median(spans) - statistics.median(sums)) / 1e3, statistics.median(idles) / 1e3,
           min(spans) / 1e3, max(spans) / 1e3))
    step_sum = sum(sums) / ns

    # Kernel time per step, by short name, then by name with template arguments and grid.
    def table(title, key):
        # key(record) -> the columns that name a group, each (text, width)
        tot, cnt = collections.defaultdict(int), collections.Counter()
        for s in kept:
            for r in s:
                k = key(r)
                tot[k] += r['end'] - r['start']
                cnt[k] += 1
        print()
        print('%s: count per step, mean us, total us per step, %% of the sum of durations' % title)
        for k, t in sorted(tot.items(), key=lambda x: -x[1]):
            name = ' '.join('%-*s' % (w, text) for text, w in k)
            print('  %s %6.1f %8.2f %9.2f %5.1f' % (name, cnt[k] / ns, t / cnt[k] / 1e3, t / ns / 1e3,
                                                   100.0 * t / ns / step_sum if step_sum else 0.0))

    table('by short name', lambda r: ((short_name(r['name'])[:60], 60),))
    table('by name with template arguments, and grid',
          lambda r: ((detail_name(r['name'], 70), 70), (grid_text(r), 11)))

    # The critical path: with programmatic dependent launch a kernel starts (and its duration counts)
    # while the one before it still runs, so durations overlap; each record's end minus the latest end
    # before it adds up to the span, and says what each kernel adds to the step.
    ctot, ccnt = collections.defaultdict(int), collections.Counter()
    for s in kept:
        latest = s[0]['start']
        for r in s:
            k = (detail_name(r['name'], 70), grid_text(r))
            ctot[k] += max(0, r['end'] - latest)
            ccnt[k] += 1
            latest = max(latest, r['end'])
    print()
    print('added to the span (end - the latest earlier end), by name and grid: count per step, mean us, '
          'total us per step, % of the span')
    span = statistics.median(spans)
    for k, t in sorted(ctot.items(), key=lambda x: -x[1]):
        print('  %-70s %-11s %6.1f %8.2f %9.2f %5.1f' % (k[0], k[1], ccnt[k] / ns, t / ccnt[k] / 1e3,
                                                       t / ns / 1e3, 100.0 * t / ns / span if span else 0.0))

    # Per layer: the step's records repeat with a period (one decoder layer's kernels); what each position
    # of the period adds to the span, so that kernels of one name and grid (the GEMVs) are told apart.
    names = [(detail_name(r['name'], 70), grid_text(r)) for r in med]
    best = None  # (coverage, period, start, repeats)
    for period in range(2, min(24, len(names) // 3) + 1):
        i = 0
        while i + period < len(names):
            j = i
            while j + period < len(names) and names[j] == names[j + period]:
                j += 1
            reps = (j - i) // period + 1
            if reps >= 3 and (best is None or reps * period > best[0]):
                best = (reps * period, period, i, reps)
            i = max(j, i + 1)
    if best:
        _, period, start, reps = best
        ptot = [0] * period
        for s in kept:
            latest = s[0]['start']
            for i, r in enumerate(s):
                if start <= i < start + reps * period:
                    ptot[(i - start) % period] += max(0, r['end'] - latest)
                latest = max(latest, r['end'])
        print()
        print('per layer: a period of %d records repeats %d times from record %d; added to the span per '
              'position (mean us per repeat):' % (period, reps, start))
        for k in range(period):
            print('  %2d %-70s %-11s %8.2f' % (k, names[start + k][0], names[start + k][1],
                                                ptot[k] / ns / reps / 1e3))
        print('  the period: %.2f us, %d of them %.1f us of the %.1f us span' %
              (sum(ptot) / ns / reps / 1e3, reps, sum(ptot) / ns / 1e3, span / 1e3))

    # Gaps by (previous, next) pair.
    gtot, gcnt = collections.defaultdict(int), collections.Counter()
    all_gaps, negative = 0, 0
    for s in kept:
        for p, r in zip(s, s[1:]):
            g = r['start'] - p['end']
            k = (bare_name(p['name'], 38), bare_name(r['name'], 38))
            gtot[k] += g
            gcnt[k] += 1
            all_gaps += g
            negative += g < 0
    print()
    print('gaps (next start - previous end) per step: %d, total %.1f us, %.1f negative (overlap); top 15 '
          'pairs by total: count per step, mean us, total us per step' %
          (step_len - 1, all_gaps / ns / 1e3, negative / ns))
    for k, t in sorted(gtot.items(), key=lambda x: -x[1])[:15]:
        print('  %-38s -> %-38s %5.1f %7.2f %8.2f' %
              (k[0], k[1], gcnt[k] / ns, t / gcnt[k] / 1e3, t / ns / 1e3))
    return 0


if __name__ == '__main__':
    sys.exit(main())
