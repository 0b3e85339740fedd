"""Detection-format readers (DOTA, DIOR, FAIR1M, HRSC2016, iSAID) and tiling."""
