"""medimp.report stage."""
