"""``sweeplab services``: start, stop and check sweeplab's long-running parts outside Docker.

The same scripts under ``services/`` that the shipped systemd units run are started here as
process groups, with their PID and log files in a state folder (``$SWEEPLAB_STATE_DIR``, by
default ``~/.local/state/sweeplab``), and checked the way each part says it is healthy.

    catalog     what the services are: script, unit file, endpoint, health check
    health      the checks: an HTTP ``/health``, Ray's GCS health check, a heartbeat file
    supervisor  PID/log files, starting a script as a process group, stopping it
    command     the ``sweeplab services up|down|status`` subcommand and its Rich table
"""
