"""medimp.evaluate stage."""
