"""medimp.data stage."""
