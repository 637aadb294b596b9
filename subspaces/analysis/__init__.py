"""Figures from results: Figure 4 and 5 and calibration (:mod:`.figures`; from any results.csv or
run folder: :mod:`.plot`, the rows it reads and groups: :mod:`.rows`), plane plots (:mod:`.plane`)."""
