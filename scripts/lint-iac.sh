#!/usr/bin/env bash
# Infrastructure-as-code checks: cfn-lint, sam validate --lint, sam build, checkov, parliament, asl-validator.
#
# Each tool lives in its own virtualenv under .tools/ (their pins clash with the project's), reused while its
# pinned version matches. Every step is timed; the first failing step stops the run with its name.
#
#   bash scripts/lint-iac.sh            all steps
#   IAC_STEPS="cfn-lint checkov" bash scripts/lint-iac.sh   only the named steps (tools are installed as needed)
#   IAC_TEMPLATE=other.yaml bash scripts/lint-iac.sh         another template
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/pinned-venv.sh
source scripts/pinned-venv.sh

CFN_LINT_VERSION="1.58.0"
SAM_CLI_VERSION="1.170.0"
CHECKOV_VERSION="3.3.30"
ASL_VALIDATOR_VERSION="4.0.0"
PARLIAMENT_VERSION="1.6.4"
PYTHON="${PYTHON:-python3.11}"
REGION="us-east-1"
TOOLS=".tools"
TEMPLATE="${IAC_TEMPLATE:-template.yaml}"
STEPS="${IAC_STEPS:-cfn-lint sam-validate sam-build checkov parliament asl-validator}"
PROJECT_PYTHON="${PROJECT_PYTHON:-.venv/bin/python}"

export AWS_DEFAULT_REGION="${REGION}" AWS_REGION="${REGION}"
export SAM_CLI_TELEMETRY=0 BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
# The template's Fn::ForEach loops (AWS::LanguageExtensions) are expanded by SAM CLI locally only when asked.
export SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false

TIMINGS=()
SCRIPT_START="${EPOCHREALTIME}"

fail() {
    echo "lint-iac: FAILED: $*" >&2
    exit 1
}

elapsed_since() {
    # Seconds since the EPOCHREALTIME value $1, with one decimal.
    awk -v s="$1" -v e="${EPOCHREALTIME}" 'BEGIN { printf "%.1f", e - s }'
}

run_step() {
    # run_step NAME COMMAND...: run, time and record one step; stop the script if it fails.
    local name="$1"
    shift
    echo "==> ${name}"
    local start="${EPOCHREALTIME}" rc=0
    "$@" || rc=$?
    local took
    took="$(elapsed_since "${start}")"
    TIMINGS+=("$(printf '%-16s %6ss' "${name}" "${took}")")
    if [[ ${rc} -ne 0 ]]; then
        fail "step '${name}' exited ${rc} after ${took}s (see its output above)"
    fi
    echo "    ${name}: ok (${took}s)"
}

wanted() {
    [[ " ${STEPS} " == *" $1 "* ]]
}

ensure_tool() {
    # ensure_tool NAME REQUIREMENT: a venv at .tools/NAME holding REQUIREMENT (pip form), rebuilt if the pin changed.
    pinned_venv "${TOOLS}/$1" "$2"
}

install_tools() {
    # The three venvs install side by side; a failed install ends the step after all have finished.
    mkdir -p "${TOOLS}"
    local pids=() pid rc=0
    if wanted cfn-lint; then
        ensure_tool cfn-lint "cfn-lint==${CFN_LINT_VERSION}" &
        pids+=($!)
    fi
    if wanted sam-validate || wanted sam-build || wanted checkov || wanted parliament; then
        ensure_tool sam "aws-sam-cli==${SAM_CLI_VERSION}" &
        pids+=($!)
    fi
    if wanted checkov; then
        ensure_tool checkov "checkov==${CHECKOV_VERSION}" &
        pids+=($!)
    fi
    if wanted parliament; then
        ensure_tool parliament "parliament==${PARLIAMENT_VERSION}" &
        pids+=($!)
    fi
    for pid in "${pids[@]}"; do
        wait "${pid}" || rc=1
    done
    return "${rc}"
}

step_cfn_lint() {
    "${TOOLS}/cfn-lint/bin/cfn-lint" --format parseable "${TEMPLATE}"
}

step_sam_validate() {
    "${TOOLS}/sam/bin/sam" validate --lint --template-file "${TEMPLATE}" --region "${REGION}"
}

step_sam_build() {
    command -v python3.11 >/dev/null || { echo "sam build needs python3.11 on PATH" >&2; return 1; }
    # --cached reuses the build of every function and layer whose source and manifest did not change.
    "${TOOLS}/sam/bin/sam" build --template-file "${TEMPLATE}" --build-dir .aws-sam/build \
        --cached --cache-dir .aws-sam/cache --parallel --region "${REGION}"
}

# The template after the SAM transform, twice: under the parameters' defaults, and with the defaults flipped that
# switch on the optional resources (Firehose delivery, MSK, the alert e-mail, zone replication, Object Lock). Written once a
# run, for checkov and parliament both.
TRANSFORMED=".aws-sam/transformed"
transform_template() {
    [[ -n "${TRANSFORMED_DONE:-}" ]] && return 0
    local out="${TRANSFORMED}"
    mkdir -p "${out}"
    "${TOOLS}/sam/bin/python" scripts/sam_transform.py "${TEMPLATE}" "${out}/defaults.yaml" --region "${REGION}" ||
        return 1
    "${TOOLS}/sam/bin/python" scripts/sam_transform.py "${TEMPLATE}" "${out}/optional-resources.yaml" \
        --region "${REGION}" --set StreamDelivery=firehose --set AlertEmail=alerts@example.com \
        --set "MskClusterArn=arn:aws:kafka:${REGION}:123456789012:cluster/example/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d-1" \
        --set ReplicaRawBucketArn=arn:aws:s3:::example-replica-raw --set RawOriginalsRetentionDays=30 \
        --set ReplicaCuratedBucketArn=arn:aws:s3:::example-replica-curated \
        --set "ReplicaKmsKeyArn=arn:aws:kms:us-west-2:123456789012:key/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d" ||
        return 1
    TRANSFORMED_DONE=1
}

step_checkov() {
    # checkov reads the template as written (loops expanded; inline skips in resource Metadata apply; SAM resources get its SAM
    # checks) and as CloudFormation deploys it after the SAM transform, so the generated roles, functions,
    # permissions, rules and event source mappings are checked too (the transform keeps a function's Metadata).
    # checkov drops resources whose Condition is false under the parameters' defaults: the second transformed
    # copy (transform_template) switches the optional resources on.
    local out=".aws-sam/checkov"
    mkdir -p "${out}"
    transform_template || return 1
    # The template as written, its Fn::ForEach loops expanded (checkov would skip the loops' resources and, with a
    # loop among the resources, apply no SAM Globals).
    "${TOOLS}/sam/bin/python" scripts/sam_transform.py "${TEMPLATE}" "${out}/template.yaml" --expand-only || return 1
    "${TOOLS}/checkov/bin/checkov" --quiet --compact --framework cloudformation \
        -f "${out}/template.yaml" -f "${TRANSFORMED}/defaults.yaml" -f "${TRANSFORMED}/optional-resources.yaml"
}

step_parliament() {
    # Every IAM policy of the deployed template (the SAM transform's generated roles included, both copies as for
    # checkov) written out as JSON with its intrinsics resolved, then linted: no finding at MEDIUM or above.
    # Suppressions live in scripts/parliament.yaml, each with its reason.
    local out=".aws-sam/parliament"
    mkdir -p "${out}"
    transform_template || return 1
    [[ -x "${PROJECT_PYTHON}" ]] || { echo "parliament needs the project's ${PROJECT_PYTHON} (make .venv/.installed)" >&2; return 1; }
    "${PROJECT_PYTHON}" scripts/iam-policies.py "${out}/policies" "${TRANSFORMED}/defaults.yaml" \
        "${TRANSFORMED}/optional-resources.yaml" ||
        return 1
    local config=()
    if grep -qvE '^[[:space:]]*(#|$)' scripts/parliament.yaml; then
        config=(--config scripts/parliament.yaml) # parliament refuses a configuration without entries
    fi
    "${TOOLS}/parliament/bin/parliament" --directory "${out}/policies" --include_policy_extension json \
        --minimum_severity MEDIUM "${config[@]}"
}

step_asl_validator() {
    shopt -s nullglob
    local files=(statemachines/*.asl.json)
    shopt -u nullglob
    if [[ ${#files[@]} -eq 0 ]]; then
        echo "    no statemachines/*.asl.json"
        return 0
    fi
    command -v npx >/dev/null || { echo "npx (Node.js) is required to validate ${files[*]}" >&2; return 1; }
    local args=()
    local f
    for f in "${files[@]}"; do
        args+=(--json-path "${f}")
    done
    npx --yes "asl-validator@${ASL_VALIDATOR_VERSION}" "${args[@]}"
}

[[ -f "${TEMPLATE}" ]] || fail "${TEMPLATE} not found"
run_step install-tools install_tools
wanted cfn-lint && run_step cfn-lint step_cfn_lint
wanted sam-validate && run_step sam-validate step_sam_validate
wanted sam-build && run_step sam-build step_sam_build
wanted checkov && run_step checkov step_checkov
wanted parliament && run_step parliament step_parliament
wanted asl-validator && run_step asl-validator step_asl_validator

echo "==> timings"
printf '    %s\n' "${TIMINGS[@]}"
printf '    %-16s %6ss\n' "total" "$(elapsed_since "${SCRIPT_START}")"
echo "lint-iac: all checks passed"
