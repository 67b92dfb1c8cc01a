"""Shared settings for the trainer tests: a tiny PATNet and a tiny synthetic run."""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_ARCH = {"embed_dim": 8, "depths": [1, 1, 1, 1], "head_width": 32, "name": "tiny"}
TINY_RUN = dict(recipe="proxy", device="cpu", resolution=32, workers=0, progress=False, tensorboard=False)


def write_tiny_arch(folder: Path) -> Path:
    import yaml

    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_ARCH))
    return path


def subprocess_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


PYTHON = sys.executable
