"""Nightly benchmarks: the same suites every night, a history of their results, regression
verdicts that do not cry wolf, reports and a scheduler.

- :mod:`~sweeplab.nightly.suite`: suites (``conf/benchmark/*.yaml``) and settings (``conf/nightly.yaml``);
- :mod:`~sweeplab.nightly.history`: the history store (SQLAlchemy models, Alembic ``migrations/``);
- :mod:`~sweeplab.nightly.runner`: one night: claim, run what is missing, judge, rerun, report;
- :mod:`~sweeplab.nightly.detect`: change points (E-divisive means) and verdicts (Welch);
- :mod:`~sweeplab.nightly.status`: the stored statuses: how an entry's seed ended, where a night's claim is;
- :mod:`~sweeplab.nightly.report`: Markdown + HTML reports with a plot per watched metric;
- :mod:`~sweeplab.nightly.schedule`: the cron scheduler with an injectable clock;
- :mod:`~sweeplab.nightly.bench`: the detector's false-alarm rate and detection delay, measured;
- the command, ``sweeplab nightly run|history|report|accept|schedule``, is :mod:`sweeplab.cli.nightly`.
"""
