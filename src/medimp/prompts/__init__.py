"""medimp.prompts stage."""
