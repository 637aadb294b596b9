"""Plane plots through a curve, a simplex or three networks (:mod:`subspaces.analysis.plane`;
``subspaces-plane`` after ``pip install``): ``python analyze_results/plane.py CURVE.pt``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from subspaces.analysis.plane import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
