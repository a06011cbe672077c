"""Every measurement in one run, as `medledger bench` does (this script is that command's body).

.venv/bin/python bench/run_all.py [--quick] [--json FILE] [--plot FILE.png]
"""

from __future__ import annotations

import sys

import typer

from medledger.cli.bench import bench

if __name__ == "__main__":
    sys.argv[0] = "medledger bench"
    typer.run(bench)
