"""examples/python/ransac.py (the paper's Figure 1 in PyTorch), shortened."""

import subprocess
import sys

from conftest import REPO


def test_ransac_example_runs_and_learns_a_width():
    script = REPO / "examples" / "python" / "ransac.py"
    out = subprocess.run(
        [sys.executable, str(script), "--iterations", "300", "--seed", "1"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["implicit", "trust-region"]
    for line in lines:
        sigma = float(line.split()[2])
        assert sigma > 1.0, line  # sigma grows from 1: the inliers spread over 4
