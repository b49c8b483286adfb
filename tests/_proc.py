"""Helpers for tests that run a medimp command in a child process."""

# Ctrl-C reaches the child as KeyboardInterrupt even when the test run was started in the
# background, where the shell ignores SIGINT and a child would inherit that. Run it as
# ``[sys.executable, "-c", MAIN_WITH_SIGINT, <command>, ...]``.
MAIN_WITH_SIGINT = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                    "from medimp.cli.main import main; main()")
