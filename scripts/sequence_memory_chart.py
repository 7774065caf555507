#!/usr/bin/env python3
"""Memory of a training step against sequence length, predicted and measured, for a few
micro-batch sizes: runs `gradaccum bench --sequence-length L` per length and writes a CSV
and an SVG chart (no plotting library needed).

Usage: python3 scripts/sequence_memory_chart.py [path/to/gradaccum] [output prefix]
"""
import csv
import os
import subprocess
import sys
import tempfile

GRADACCUM = sys.argv[1] if len(sys.argv) > 1 else ".build/release/gradaccum"
PREFIX = sys.argv[2] if len(sys.argv) > 2 else "docs/figures/sequence-memory"
MODEL = "embedding(256,64) positionalembedding(256,64) transformerblock(64,4) layernorm(64) linear(64,256)"
LENGTHS = [8, 16, 32, 64, 96, 128, 160, 192, 224, 256]
SIZES = [1, 4, 16]
COLOURS = {1: "#1f77b4", 4: "#ff7f0e", 16: "#2ca02c"}


def measure():
    rows = []
    for length in LENGTHS:
        with tempfile.NamedTemporaryFile(suffix=".csv") as table:
            subprocess.run([GRADACCUM, "bench", "--model", MODEL, "--sequence-length", str(length), "--optimizer", "adamw",
                            "--micro-batches", ",".join(map(str, SIZES)), "--repeat", "1", "--csv", table.name],
                           check=True, capture_output=True)
            with open(table.name) as f:
                for row in csv.DictReader(f):
                    rows.append({"sequence_length": length, "micro_batch": int(row["micro_batch"]),
                                 "predicted_peak_bytes": int(row["predicted_peak_bytes"]),
                                 "measured_peak_bytes": int(row["measured_peak_bytes"]),
                                 "tokens_per_second": float(row["tokens_per_second"])})
        print(f"length {length}: done", flush=True)
    return rows


def svg(rows):
    width, height, left, right, top, bottom = 760, 440, 70, 150, 60, 50
    top_mib = max(r["measured_peak_bytes"] for r in rows) / 2**20 * 1.08
    def x(length): return left + (width - left - right) * length / LENGTHS[-1]
    def y(mib): return height - bottom - (height - top - bottom) * mib / top_mib
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="22" font-size="14">Peak memory of a training step against sequence length (AdamW)</text>',
             f'<text x="{left}" y="40" font-size="11" fill="#555">{MODEL}</text>',
             f'<text x="{left}" y="{height - 12}">sequence length (tokens)</text>']
    step = 5 if top_mib < 40 else 10
    mib = 0
    while mib <= top_mib:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(mib):.1f}" y2="{y(mib):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y(mib) + 4:.1f}" text-anchor="end">{mib} MiB</text>')
        mib += step
    for length in LENGTHS:
        parts.append(f'<text x="{x(length):.1f}" y="{height - bottom + 18}" text-anchor="middle">{length}</text>')
    for size in SIZES:
        points = [r for r in rows if r["micro_batch"] == size]
        measured = " ".join(f'{x(r["sequence_length"]):.1f},{y(r["measured_peak_bytes"] / 2**20):.1f}' for r in points)
        predicted = " ".join(f'{x(r["sequence_length"]):.1f},{y(r["predicted_peak_bytes"] / 2**20):.1f}' for r in points)
        parts.append(f'<polyline points="{measured}" fill="none" stroke="{COLOURS[size]}" stroke-width="5" opacity="0.35"/>')
        parts.append(f'<polyline points="{predicted}" fill="none" stroke="{COLOURS[size]}" stroke-width="1.5" stroke-dasharray="5,3"/>')
    legend_x = width - right + 15
    for index, size in enumerate(SIZES):
        parts.append(f'<line x1="{legend_x}" x2="{legend_x + 25}" y1="{top + 20 * index}" y2="{top + 20 * index}" stroke="{COLOURS[size]}" stroke-width="5" opacity="0.5"/>')
        parts.append(f'<text x="{legend_x + 32}" y="{top + 20 * index + 4}">{size} sample{"s" if size > 1 else ""}</text>')
    parts.append(f'<text x="{legend_x}" y="{top + 20 * len(SIZES) + 10}">wide: measured</text>')
    parts.append(f'<text x="{legend_x}" y="{top + 20 * len(SIZES) + 26}">dashed: predicted</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    rows = measure()
    os.makedirs(os.path.dirname(PREFIX) or ".", exist_ok=True)
    with open(PREFIX + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(PREFIX + ".svg", "w") as f:
        f.write(svg(rows))
    worst = max(abs(r["predicted_peak_bytes"] - r["measured_peak_bytes"]) / r["measured_peak_bytes"] for r in rows)
    print(f"wrote {PREFIX}.csv and {PREFIX}.svg; largest prediction error {worst:.2%}")
