"""`lunarhub render kubernetes|hpc` (lunarhub.compute.render)."""

from __future__ import annotations

import argparse

from lunarhub.cli import delegated
from lunarhub.compute import render


def register(sub: argparse._SubParsersAction) -> None:
    delegated.register(sub, "render", render.build_parser(), render.run,
                       "render the deployment for Kubernetes (daskhub Helm values) or an HPC site's "
                       "dask-gateway (Slurm/PBS)")
