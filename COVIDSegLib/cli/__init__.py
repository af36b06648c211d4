"""The `covidseg` command line: the console script and its sub-commands."""
