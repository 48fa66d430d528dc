#!/usr/bin/env python3
"""Turns loopgrad_bench's JSON (--benchmark_out=bench.json --benchmark_out_format=json) into the
markdown tables of docs/benchmarks.md and, with gnuplot, the plots: time and memory per step
against T for RTRL and BPTT (plot.png), and the cost per step against n for RTRL, the blocked
algorithm and BPTT (exact_cost_vs_n.png beside it). A run filtered to some benchmarks gets the
tables its rows allow.  Usage: summarize.py bench.json [plot.png]"""
import json
import os
import re
import subprocess
import sys
import tempfile


def main(path, png=None):
    runs = {b["name"]: b for b in json.load(open(path))["benchmarks"]}
    nets = []
    for name in runs:
        if name.startswith("rtrl/") and name.endswith("/pruned"):
            nets.append(name.split("/")[1])
    ns = lambda b: b["real_time"] * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b["time_unit"]]
    # A filtered run (--benchmark_filter) may lack the rows of the first tables: print what it has.
    complete = all(f"{kind}/{n}{suffix}" in runs for n in nets
                   for kind, suffix in (("rtrl", "/dense"), ("rtrl", "/interpreter"), ("rtrl", "/blas"), ("forward", ""),
                                        ("bptt", "/10"), ("bptt", "/100"), ("bptt", "/1000")))
    if complete:
        print_rtrl_tables(runs, nets, ns)
    portable = [n for n in nets if f"rtrl/{n}/portable" in runs]
    if portable:
        print_table("Default build (loopgrad_add_network: -march=native) against a portable one (LOOPGRAD_PORTABLE, "
                    "no -march), one exact RTRL step, same run:",
                    ["network", "default ns/step", "portable ns/step", "portable / default"],
                    [[n, f"{ns(runs[f'rtrl/{n}/pruned']):.4g}", f"{ns(runs[f'rtrl/{n}/portable']):.4g}",
                      f"{ns(runs[f'rtrl/{n}/portable']) / ns(runs[f'rtrl/{n}/pruned']):.2f}"] for n in portable])
    updates = [n for n in nets if f"update/{n}" in runs and f"blas/{n}" in runs]
    if updates:
        core = json.load(open(path)).get("context", {}).get("openblas_core", "?")
        rows = []
        for n in updates:
            u, b = runs[f"update/{n}"], runs[f"blas/{n}"]
            rows.append([n, f"{ns(u):.4g}", f"{u['FLOP/s'] / 1e9:.1f}", f"{ns(b):.4g}, {b['FLOP/s'] / 1e9:.1f}",
                         f"{100 * u['FLOP/s'] / b['FLOP/s']:.0f}%"])
        print_table(f"The sensitivity update alone (Eqn. 4, the emitted dense products with their packing and the "
                    f"immediate terms) against OpenBLAS (core {core}, one thread) on the same dense shapes, same run:",
                    ["network", "update ns", "update GFLOP/s", "OpenBLAS on the shapes: ns, GFLOP/s",
                     "emitted / OpenBLAS"], rows)
    blocked = [n for n in nets if any(k.startswith(f"blocked/{n}/accumulate:1/") for k in runs) and f"bptt/{n}/1000" in runs]
    if blocked:
        print_blocked_table(runs, blocked, ns)
    hand = [n for n in nets if f"rtrl/{n}/openblas" in runs]
    if hand:
        core = json.load(open(path)).get("context", {}).get("openblas_core", "?")
        print()
        print(f"Exact RTRL written by hand on OpenBLAS (one dgemm per step, the gradient fused in as one more row; "
              f"OpenBLAS core {core}, one thread) against the generated kernel, same run:")
        print()
        print("| network | loopgrad RTRL ns/step | GFLOP/s | hand-written OpenBLAS RTRL ns/step | GFLOP/s | "
              "OpenBLAS / loopgrad time | loopgrad blocked ns/step | OpenBLAS RTRL / loopgrad blocked time |")
        print("|" + " --- |" * 8)
        for n in hand:
            r, o = runs[f"rtrl/{n}/pruned"], runs[f"rtrl/{n}/openblas"]
            b1 = next((v for k, v in runs.items() if k.startswith(f"blocked/{n}/accumulate:1/")), None)
            print(f"| {n} | {ns(r):.4g} | {r['FLOP/s'] / 1e9:.1f} | {ns(o):.4g} | {o['FLOP/s'] / 1e9:.1f} | "
                  f"{ns(o) / ns(r):.2f} | {ns(b1) if b1 else float('nan'):.4g} | "
                  f"{ns(o) / ns(b1) if b1 else float('nan'):.1f}x |")
    if png and complete:
        plot(runs, nets, ns, png)
    if png and blocked:
        plot_cost_against_n(runs, ns, os.path.join(os.path.dirname(png), "exact_cost_vs_n.png"))


def print_table(intro, header, rows):
    """A markdown table after a blank line, its one-line introduction and another blank line."""
    print()
    print(intro)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_rtrl_tables(runs, nets, ns):
    print("| network | RTRL ns/step | macs | min_macs | GFLOP/s | OpenBLAS GFLOP/s (dense shapes) | "
          "% of BLAS | with --blas-min-flops 2^20: ns/step, GFLOP/s, % of BLAS | unpruned ns/step | pruned speed-up | "
          "interpreter ns/step | kernel vs interpreter | forward ns | RTRL / forward | BPTT at T=10 / 100 / 1000 (ns) |")
    print("|" + " --- |" * 15)
    for n in nets:
        p, d, i = runs[f"rtrl/{n}/pruned"], runs[f"rtrl/{n}/dense"], runs[f"rtrl/{n}/interpreter"]
        f = runs[f"forward/{n}"]
        blas = runs.get(f"blas/{n}")
        gf = p["FLOP/s"] / 1e9
        bgf = blas["FLOP/s"] / 1e9 if blas else float("nan")
        bptt = " / ".join(f"{ns(runs[f'bptt/{n}/{T}']):.3g}" for T in (10, 100, 1000))
        b = runs[f"rtrl/{n}/blas"]
        bl = b["FLOP/s"] / 1e9
        print(f"| {n} | {ns(p):.4g} | {p['macs']:.4g} | {p['min_macs']:.4g} | {gf:.1f} | {bgf:.1f} | "
              f"{100 * gf / bgf:.0f}% | {ns(b):.4g}, {bl:.1f}, {100 * bl / bgf:.0f}% | {ns(d):.4g} | {ns(d) / ns(p):.2f}x | {ns(i):.4g} | {ns(i) / ns(p):.1f}x | "
              f"{ns(f):.3g} | {ns(p) / ns(f):.0f}x | {bptt} |")
    print()
    print("| network | RTRL bytes per stream | BPTT bytes at T = 1e2 | 1e3 | 1e4 | 1e5 |")
    print("|" + " --- |" * 6)
    for n in nets:
        p = runs[f"rtrl/{n}/pruned"]
        print(f"| {n} | {p['rtrl_bytes']:.3g} | " + " | ".join(f"{p[f'bptt_bytes_T1e{e}']:.3g}" for e in (2, 3, 4, 5)) + " |")
    batched = [n for n in nets if f"batch/{n}/B:4/threads:1/real_time" in runs]
    if batched:
        print()
        print("| network | one stream, rtrl_step ns | batch of 4, 1 thread: ns per stream | 2 threads started per call | "
              "speed-up | BatchPool of 2 | speed-up |")
        print("|" + " --- |" * 7)
        for n in batched:
            one, two = runs[f"batch/{n}/B:4/threads:1/real_time"], runs[f"batch/{n}/B:4/threads:2/real_time"]
            pool = runs[f"batch/{n}/B:4/pool:2/real_time"]
            print(f"| {n} | {ns(runs[f'rtrl/{n}/pruned']):.4g} | {one['ns_per_step']:.4g} | {two['ns_per_step']:.4g} | "
                  f"{one['ns_per_step'] / two['ns_per_step']:.2f}x | {pool['ns_per_step']:.4g} | "
                  f"{one['ns_per_step'] / pool['ns_per_step']:.2f}x |")


def background(runs, n):
    """The row blocked/<n>/background (the block end on a second thread), or None in a run without it."""
    return next((v for k, v in runs.items() if k.startswith(f"blocked/{n}/background/")), None)


def background_tuned(runs, n):
    """The row blocked/<n>/background_tuned (the background schedule at the block length tuned on the
    machine), or None in a run without it."""
    return next((v for k, v in runs.items() if k.startswith(f"blocked/{n}/background_tuned/")), None)


def print_blocked_table(runs, blocked, ns):
    print()
    print("| network | cost model picks | h | RTRL ns/step | blocked ns/step | speed-up | blocked, summed over h steps | "
          "speed-up | median / max step (ns) | background schedule: h, ns/step, speed-up, median / max (ns) | "
          "model MACs RTRL / blocked | RTRL bytes | blocked bytes | ratio | crossover T vs BPTT |")
    print("|" + " --- |" * 15)
    for n in blocked:
        b1 = next(v for k, v in runs.items() if k.startswith(f"blocked/{n}/accumulate:1/"))
        bh = next(v for k, v in runs.items() if k.startswith(f"blocked/{n}/accumulate:") and v is not b1)
        r = runs[f"rtrl/{n}/pruned"]
        bptt_per_step = ns(runs[f"bptt/{n}/1000"]) / 1000
        pick = "blocked" if b1["chosen_blocked"] else "RTRL"
        faster = "blocked" if ns(b1) < ns(r) else "RTRL"
        bg = background(runs, n)
        bg_cell = (f"{bg['block_length']:.0f}, {ns(bg):.4g}, {ns(r) / ns(bg):.1f}x, {bg['median_ns']:.3g} / {bg['max_ns']:.3g}"
                   if bg else "-")
        print(f"| {n} | {pick}{'' if pick == faster else ' (measured: ' + faster + ')'} | {b1['block_length']:.0f} | "
              f"{ns(r):.4g} | {ns(b1):.4g} | {ns(r) / ns(b1):.1f}x | {ns(bh):.4g} | {ns(r) / ns(bh):.1f}x | "
              f"{b1['median_ns']:.3g} / {b1['max_ns']:.3g} | {bg_cell} | "
              f"{b1['model_rtrl_macs']:.3g} / {b1['model_macs']:.3g} | "
              f"{r['rtrl_bytes']:.3g} | {b1['blocked_bytes']:.3g} | {b1['blocked_bytes'] / r['rtrl_bytes']:.2f} | "
              f"{ns(b1) / bptt_per_step:.0f} |")
    timed = [n for n in blocked if any(k.startswith(f"blocked/{n}/real_time/") for k in runs)]
    if timed:
        print()
        print("The schedules: every step's time, the block end's work at once (block_end), spread over the next "
              "block's steps (real_time) or on a second thread while the next block runs (background); a gradient "
              "every step.")
        print()
        print("| network | h | block_end: mean ns | median / p99 / max | max / median | real_time: mean ns | "
              "median / p99 / max | max / median | background: h, mean ns | median / p99 / max | max / median | "
              "mean, real_time / block_end | mean, background / block_end | bytes, real_time / RTRL |")
        print("|" + " --- |" * 14)
        for n in timed:
            b1 = next(v for k, v in runs.items() if k.startswith(f"blocked/{n}/accumulate:1/"))
            rt = next(v for k, v in runs.items() if k.startswith(f"blocked/{n}/real_time/"))
            bg = background(runs, n)
            r = runs[f"rtrl/{n}/pruned"]
            bg_cells = (f"{bg['block_length']:.0f}, {ns(bg):.4g} | {bg['median_ns']:.3g} / {bg['p99_ns']:.3g} / {bg['max_ns']:.3g} | "
                        f"{bg['max_ns'] / bg['median_ns']:.1f}" if bg else "- | - | -")
            print(f"| {n} | {b1['block_length']:.0f} | {ns(b1):.4g} | {b1['median_ns']:.3g} / {b1['p99_ns']:.3g} / "
                  f"{b1['max_ns']:.3g} | {b1['max_ns'] / b1['median_ns']:.1f} | {ns(rt):.4g} | {rt['median_ns']:.3g} / "
                  f"{rt['p99_ns']:.3g} / {rt['max_ns']:.3g} | {rt['max_ns'] / rt['median_ns']:.1f} | {bg_cells} | "
                  f"{ns(rt) / ns(b1):.2f} | {f'{ns(bg) / ns(b1):.2f}' if bg else '-'} | "
                  f"{rt['blocked_bytes'] / r['rtrl_bytes']:.2f} |")
    stream = runs.get("stream/copy")
    passes = [n for n in blocked if f"delta_pass/{n}" in runs]
    if stream and passes:
        bw = stream["bytes_per_s"]
        print()
        print(f"Streaming bandwidth (STREAM copy, one thread, same run): {bw / 1e9:.1f} GB/s.")
        print()
        print("| network | Delta bytes | one pass over Delta: ns, GB/s | % of STREAM copy | blocked step ns | "
              "step / (Delta bytes at STREAM speed) | background schedule: step / (the same) | "
              "background's sweep alone: swept steps, ns per swept step | "
              "background's least step (one pass over Delta + the sweep) / (the same) | "
              "background at the tuned block length: h (model's), step / (the same) | "
              "summed over h: step / (Delta bytes at STREAM speed) |")
        print("|" + " --- |" * 11)
        for n in passes:
            d = runs[f"delta_pass/{n}"]
            b1 = next(v for k, v in runs.items() if k.startswith(f"blocked/{n}/accumulate:1/"))
            bh = next(v for k, v in runs.items() if k.startswith(f"blocked/{n}/accumulate:") and v is not b1)
            delta_bytes = d["bytes_per_s"] * ns(d) / 1e9
            floor = delta_bytes / bw * 1e9
            bg = background(runs, n)
            # The background schedule's caller sweeps 1.5 h steps on average, then passes over Delta.
            sw = runs.get(f"sweep/{n}")
            sweep_cells = (f"{sw['swept_steps']:.0f}, {sw['ns_per_swept_step']:.4g} | "
                           f"{(ns(d) + ns(sw)) / floor:.2f}" if sw else "- | -")
            tuned = background_tuned(runs, n)
            tuned_cell = (f"{tuned['block_length']:.0f} ({tuned['model_block_length']:.0f}), {ns(tuned) / floor:.2f}"
                          if tuned else "-")
            print(f"| {n} | {delta_bytes:.3g} | {ns(d):.4g}, {d['bytes_per_s'] / 1e9:.1f} | {100 * d['bytes_per_s'] / bw:.0f}% | "
                  f"{ns(b1):.4g} | {ns(b1) / floor:.2f} | {f'{ns(bg) / floor:.2f}' if bg else '-'} | {sweep_cells} | "
                  f"{tuned_cell} | {ns(bh) / floor:.2f} |")


def plot_cost_against_n(runs, ns, png):
    """Per-step cost against the layer size for the Elman networks: RTRL, blocked, BPTT at T = 1000."""
    sizes = sorted(int(m.group(1)) for m in (re.fullmatch(r"rtrl/elman(\d+)/pruned", k) for k in runs) if m)
    rows = []
    for n in sizes:
        b1 = next((v for k, v in runs.items() if k.startswith(f"blocked/elman{n}/accumulate:1/")), None)
        if b1 is None or f"bptt/elman{n}/1000" not in runs:
            continue
        rows.append(f"{n} {ns(runs[f'rtrl/elman{n}/pruned']) / 1e3} {ns(b1) / 1e3} {ns(runs[f'bptt/elman{n}/1000']) / 1e3}")
    if len(rows) < 2:
        return
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "n.dat")
        with open(data, "w") as out:
            out.write("\n".join(rows) + "\n")
        script = f"""set terminal pngcairo size 700,460 noenhanced
set output '{png}'
set logscale xy
set grid
set key top left
set xlabel 'units n (Elman layer, 8 inputs)'
set ylabel 'microseconds per step'
set format y '%g'
set title 'cost of the exact gradient at every step'
plot '{data}' using 1:2 with linespoints lw 2 title 'RTRL', '{data}' using 1:3 with linespoints lw 2 title 'blocked exact (BlockedRtrl)', '{data}' using 1:4 with linespoints lw 2 title 'BPTT over T = 1000 steps'
"""
        subprocess.run(["gnuplot"], input=script.encode(), check=True)


def plot(runs, nets, ns, png):
    net = "elman64" if "elman64" in nets else nets[0]
    p = runs[f"rtrl/{net}/pruned"]
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "t.dat")
        with open(data, "w") as out:
            for T in (10, 100, 1000):
                out.write(f"{T} {ns(p) / 1e3} {ns(runs[f'bptt/{net}/{T}']) / 1e3} {p['rtrl_bytes'] / 1e6} "
                          f"{(p['bptt_bytes_T1e2'] + (T - 100) * (p['bptt_bytes_T1e3'] - p['bptt_bytes_T1e2']) / 900) / 1e6}\n")
            for e in (4, 5):
                out.write(f"{10 ** e} NaN NaN {p['rtrl_bytes'] / 1e6} {p[f'bptt_bytes_T1e{e}'] / 1e6}\n")
        script = f"""set terminal pngcairo size 1000,420 noenhanced
set output '{png}'
set multiplot layout 1,2
set logscale xy
set grid
set key top left
set xlabel 'T (steps of history)'
set format y '%g'
set title 'time for the exact gradient at step T ({net})'
set ylabel 'microseconds'
plot '{data}' using 1:2 with linespoints lw 2 title 'RTRL, per step (constant)', '{data}' using 1:3 with linespoints lw 2 title 'BPTT over the T steps'
set title 'memory per stream ({net})'
set ylabel 'MB'
plot '{data}' using 1:4 with linespoints lw 2 title 'RTRL', '{data}' using 1:5 with linespoints lw 2 title 'BPTT'
unset multiplot
"""
        subprocess.run(["gnuplot"], input=script.encode(), check=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
