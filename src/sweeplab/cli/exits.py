"""What ``sweeplab`` returns: one code per kind of ending, the same for every command.

A script tells "fix the command line or the config" (2) from "the work could not be done: try
again when the store or cluster is back" (3) and from "it ran and the result is bad" (1).
"""

OK = 0
FAILED = 1  # the work ran and did not succeed: a diverged run, a sweep without a model, a regression
USAGE = 2  # bad input: the command line, a config, a name no sweep has (argparse's own code too)
RUNTIME = 3  # the work could not be done: a store or cluster out of reach, a sweep that broke, I/O
INTERNAL = 4  # a bug of sweeplab's or a library's: one line, the traceback in a log file
INTERRUPTED = 130  # Ctrl-C or SIGINT: 128 + the signal's number, as shells report it
