"""Dataset statistics of SAMRS-format subsets (python -m samrs.stats): streaming counts, the
paper's Table 2 row and Figures 4-6, JSON and markdown reports."""

from samrs.analysis.counts import StatsSettings, compute_subset_stats
from samrs.analysis.subset import SubsetFiles, open_subset

__all__ = ["StatsSettings", "SubsetFiles", "compute_subset_stats", "open_subset"]
