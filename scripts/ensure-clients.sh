#!/usr/bin/env bash
# The AWS clients the endpoint tests drive, each in a virtualenv of its own under .tools/clients/ (their pins clash
# with the project's): the AWS CLI, the newest boto3 with PyAthena, and dbt-athena. A venv is reused while its pinned
# requirements match; the three install side by side.
#
#   bash scripts/ensure-clients.sh          install what is missing or out of date
#   bash scripts/ensure-clients.sh --print  also print each client's path
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/pinned-venv.sh
source scripts/pinned-venv.sh

PYTHON="${PYTHON:-python3.11}"
CLIENTS=".tools/clients"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# name|requirements (pip form, space-separated)
SPECS=(
    "awscli|awscli==1.46.3"
    "sdk|boto3==1.44.18 botocore==1.44.18 PyAthena[pandas]==4.2.1"
    "dbt|dbt-core==1.10.23 dbt-athena-community==1.11.1"
)

fail() {
    echo "ensure-clients: FAILED: $*" >&2
    exit 1
}

ensure_client() {
    # ensure_client NAME REQUIREMENTS: a venv at .tools/clients/NAME holding REQUIREMENTS, rebuilt if they changed.
    pinned_venv "${CLIENTS}/$1" "$2"
}

mkdir -p "${CLIENTS}"
pids=()
for spec in "${SPECS[@]}"; do
    ensure_client "${spec%%|*}" "${spec#*|}" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do
    wait "${pid}" || rc=1
done
[[ ${rc} -eq 0 ]] || fail "a client could not be installed (see above)"
if [[ "${1:-}" == "--print" ]]; then
    echo "aws: ${CLIENTS}/awscli/bin/aws"
    echo "sdk: ${CLIENTS}/sdk/bin/python"
    echo "dbt: ${CLIENTS}/dbt/bin/dbt"
fi
echo "ensure-clients: ok"
