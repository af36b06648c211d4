"""The `covidseg` console script: signals first, then the CLI (so that Ctrl-C or SIGTERM
during start-up also ends with one line, not a traceback)."""
import sys


def main() -> int:
    try:
        from .signals import handle_sigterm
        handle_sigterm()
        from .cli import main as cli_main
        return cli_main()
    except KeyboardInterrupt:  # before the CLI's own handling was in place
        print("covidseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
