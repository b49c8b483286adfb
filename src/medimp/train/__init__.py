"""medimp.train stage."""
