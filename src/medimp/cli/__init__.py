"""The ``medimp`` command line. Thin: parse, call one library function, print."""
