"""``python -m bench``: the same command as ``journeyflow bench``."""

from bench.cli import bench

bench(prog_name="python -m bench")
