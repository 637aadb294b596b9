"""Figure 4, Figure 5 or calibration from any results.csv files or run folders (--help):
    python analyze_results/plot.py figure4 runs/eval/results.csv [more results or run folders] [--out DIR]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from subspaces.analysis.plot import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
