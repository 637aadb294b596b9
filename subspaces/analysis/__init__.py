"""Figures from results: Figure 4 and 5 and calibration (:mod:`.figures`), plane plots (:mod:`.plane`)."""
