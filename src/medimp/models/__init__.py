"""medimp.models stage."""
