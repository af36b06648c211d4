"""The `covidseg` console script: signals first, then the CLI (so that Ctrl-C or SIGTERM
during start-up also ends with one line, not a traceback)."""
import os
import signal
import sys


def main() -> int:
    try:
        from ..signals import handle_stop_signals
        handle_stop_signals()
        from .commands import main as cli_main
        code = cli_main()
        # The work is done (or failed) and said so: a signal now, during interpreter shutdown,
        # would only kill the process without a word and hide the exit code.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except KeyboardInterrupt:  # before the CLI's own handling was in place
        print("covidseg: interrupted", file=sys.stderr)
        code = 130
    if code in (130, 143):
        # An interrupt that hit code run by a C extension (PyRun_String during torch's import)
        # makes Python kill itself with SIGINT at exit, even once handled: leave directly.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
