"""`tconv demo`: the seed layer end to end, and a small layer with every picture."""

from __future__ import annotations

import re

import numpy as np
from conftest import peer

from tconv.cli import main


def test_seed_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--no-pictures"]) == 0
    out = capsys.readouterr().out
    assert "input  (1, 8, 8, 1024) (channels_last) -> output (1, 16, 16, 512)" in out
    assert "kernel (3, 3, 512, 1024)" in out and "= 4,719,104 parameters" in out
    assert "multiply-adds 301,989,888" in out
    assert out.count("crop 0 at the start, crop 1 at the end -> 16") >= 2
    assert "Taps (4 of 9 kernel positions, 4096 products)" in out
    assert "reads only kernel[:, :, 256, :]" in out and "512 such blocks" in out
    assert "UNEVEN" in out and "phase (1, 1): 1 tap (1,1)" in out
    diffs = dict(re.findall(r"^  (scatter|gather|zero insertion|phases|matrix)\s+(\S+)", out, re.M))
    assert set(diffs) == {"scatter", "gather", "zero insertion", "phases", "matrix"}
    assert all(float(v) < 1e-4 for v in diffs.values())
    fast_ref = float(re.search(r"max \|fast - reference\| = (\S+)", out).group(1))
    assert fast_ref < 1e-4
    assert "In short: every output element" in out and "here 4/2/1 taps, by the stride-2×2" in out
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert len(out.splitlines()) < 110  # about two screens


def test_demo_input_file_gives_the_shape(tmp_path, capsys):
    """`--input x.npy` without --input-shape used to be checked against the seed's 8x8x1024."""
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    argv = ["demo", "--input", str(tmp_path / "x.npy"), "--filters", "2", "--no-pictures"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert "input  (1, 4, 4, 3) (channels_last) -> output (1, 8, 8, 2)" in capsys.readouterr().out


def test_small_demo_with_pictures(tmp_path, capsys):
    peer("matplotlib")
    argv = ["demo", "--input-shape", "3,3,4", "--filters", "2", "--kernel-size", "4"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "; even (kernel 4 is divisible by stride 2" in out
    # Every phase has 4 taps: the summary must not suggest 1/2/4 by phase (the border's counts).
    assert "here 4 taps in every stride phase; fewer at the border" in out
    names = "report.html element.png element.svg overlap.png views.png scatter.gif gather.gif"
    for name in names.split():
        assert (tmp_path / name).stat().st_size > 1000, name
    assert f"Wrote to {tmp_path}/: {', '.join(names.split())}" in out


def test_demo_summary_counts_taps_per_phase_and_border(tmp_path, capsys):
    """Kernel 2, stride 2: one tap everywhere, so no "fewer at the border" (and no "1 taps")."""
    argv = ["demo", "--input-shape", "3,3,2", "--filters", "2", "--kernel-size", "2"]
    assert main([*argv, "--no-pictures", "--out", str(tmp_path)]) == 0
    assert "lands on it (here 1 tap in every stride phase), " in capsys.readouterr().out
