#!/usr/bin/env bash
# Sourced by scripts/lint-iac.sh and scripts/ensure-clients.sh: a tool in a virtualenv of its own, kept while its pins
# match. Needs PYTHON set and a `fail MESSAGE` function in the sourcing script.

pinned_venv() {
    # pinned_venv VENV REQUIREMENTS: a venv at VENV holding REQUIREMENTS (pip form, space-separated), rebuilt only
    # when they changed; the install's output goes to VENV.install.log and its tail to stderr when it fails.
    local venv="$1" requirements="$2"
    local stamp="${venv}/.pinned" log="${venv}.install.log"
    if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${requirements}" && -x "${venv}/bin/python" ]]; then
        return 0
    fi
    command -v "${PYTHON}" >/dev/null || fail "${PYTHON} is required to install ${requirements}"
    echo "    installing ${requirements} into ${venv}"
    rm -rf "${venv}"
    # shellcheck disable=SC2086 # the requirements are words
    if ! { "${PYTHON}" -m venv "${venv}" &&
        "${venv}/bin/pip" install --upgrade pip &&
        "${venv}/bin/pip" install ${requirements}; } >"${log}" 2>&1; then
        tail -n 40 "${log}" >&2
        fail "could not install ${requirements} (full log: ${log})"
    fi
    echo "${requirements}" >"${stamp}"
}
