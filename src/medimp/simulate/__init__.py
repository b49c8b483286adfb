"""medimp.simulate stage."""
