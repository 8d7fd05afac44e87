#!/usr/bin/env bash
# sweeplab's nightly benchmarks outside Docker.
#
#   services/nightly-scheduler.sh            # the built-in scheduler, forever: the suite at
#                                            # nightly.schedule (cron) in nightly.timezone,
#                                            # the latest missed night once after downtime
#   services/nightly-scheduler.sh --once     # one night (today in nightly.timezone), then exit:
#                                            # what the systemd timer and the crontab line start
#
# Both end in the same command, `sweeplab nightly run --suite <suite>` (the scheduler starts it
# once per night with --date). Exit status of --once: 0 all ok (or another runner holds the
# night), 1 something regressed or failed (the report path is printed; nightly.on_regression
# runs), 2 bad configuration.
#
# Environment (defaults in brackets):
#   SWEEPLAB_NIGHTLY_SUITE  the suite in conf/benchmark/ [nightly]
#   SWEEPLAB_NIGHTLY_DB     history store [sqlite:///$PWD/nightly.db]; service mode:
#                           postgresql://sweeplab@db.lan:5432/nightly (created if missing). Keep the
#                           password out of the URL: PGPASSWORD or ~/.pgpass.
#   MLFLOW_TRACKING_URI     where the runs and reports are logged [sqlite:///$PWD/mlflow.db]
#   SWEEPLAB_NIGHTLY_ARGS   more arguments, e.g. "nightly.timezone=Europe/Berlin cluster=existing
#                           cluster.address=ray-head.lan:6379" (no secrets: they would show in ps)
# Reports go to ./reports/nightly/<suite>/<night>/ under the working directory, and to MLflow.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sweeplab="$root/.venv/bin/sweeplab"
[ -x "$sweeplab" ] || sweeplab=sweeplab
suite=${SWEEPLAB_NIGHTLY_SUITE:-nightly}
read -r -a extra <<< "${SWEEPLAB_NIGHTLY_ARGS:-}"

if [ "${1:-}" = "--once" ]; then
  shift
  exec "$sweeplab" nightly run --suite "$suite" ${extra[@]+"${extra[@]}"} "$@"
fi
exec "$sweeplab" nightly schedule --suite "$suite" ${extra[@]+"${extra[@]}"} "$@"
