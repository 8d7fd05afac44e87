#!/usr/bin/env bash
# Create the object store's buckets (MLflow's artifacts, Tune's sweep storage) when they are missing.
# Run once before the tracking server and sweeps use them (compose runs it as the `buckets` service).
#
#   AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=sweeplab AWS_SECRET_ACCESS_KEY_FILE=/run/secrets/s3 \
#     services/object-store-init.sh mlflow sweeps
#
# Environment: the standard AWS variables boto3 reads (AWS_ENDPOINT_URL for MinIO and the like,
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY_FILE, AWS_DEFAULT_REGION);
# SWEEPLAB_OBJECT_STORE_WAIT_S: seconds to wait for the store to answer [60].
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$root/.venv/bin/python"
[[ -x "$python" ]] || python="$(command -v python3)"
if [[ -z "${AWS_SECRET_ACCESS_KEY:-}" && -n "${AWS_SECRET_ACCESS_KEY_FILE:-}" ]]; then
  AWS_SECRET_ACCESS_KEY="$(<"$AWS_SECRET_ACCESS_KEY_FILE")"
  export AWS_SECRET_ACCESS_KEY
fi
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
exec "$python" - "${@:-mlflow sweeps}" <<'PY'
import os
import sys
import time

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError

s3 = boto3.client("s3")  # endpoint, credentials and region from the environment
buckets = " ".join(sys.argv[1:]).split()
deadline = time.monotonic() + float(os.environ.get("SWEEPLAB_OBJECT_STORE_WAIT_S", "60"))
while True:
    try:
        existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        break
    except EndpointConnectionError as err:
        if time.monotonic() > deadline:
            sys.exit(f"object-store-init: {err}")
        time.sleep(1)
    except ClientError as err:
        sys.exit(f"object-store-init: {err.response['Error'].get('Code')}: {err}")
for bucket in buckets:
    if bucket in existing:
        print(f"object-store-init: bucket {bucket} exists", file=sys.stderr)
    else:
        s3.create_bucket(Bucket=bucket)
        print(f"object-store-init: created bucket {bucket}", file=sys.stderr)
PY
