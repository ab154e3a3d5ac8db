# Sourced by scripts/test: the offline checkers the `shoal export` tests run on generated files,
# installed when missing, and named to the tests through environment variables (the tests say
# they did not run when these are unset):
# - SHOAL_TEST_KUBERNETES_VALIDATE: PyPI's kubernetes-validate, which ships the Kubernetes
#   schemas, in a private venv (its python, with PyYAML, also reads every YAML file back);
# - SHOAL_TEST_SYSTEMD_ANALYZE: systemd-analyze, for `systemd-analyze verify`.

ensure_kubernetes_validate() {
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/shoal-test/venv"
    local version="1.37.0"
    if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$version"; then
        echo "scripts/test: installing kubernetes-validate $version into $venv" >&2
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            apt-get update -qq >/dev/null 2>&1 || true
            apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        fi
        "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$version"
    fi
    export SHOAL_TEST_KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
}

ensure_systemd_analyze() {
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        echo "scripts/test: installing systemd (for systemd-analyze)" >&2
        if ! apt-get install -y -qq systemd >/dev/null 2>&1; then
            apt-get update -qq >/dev/null 2>&1 || true
            apt-get install -y -qq systemd >/dev/null
        fi
    fi
    SHOAL_TEST_SYSTEMD_ANALYZE="$(command -v systemd-analyze)"
    export SHOAL_TEST_SYSTEMD_ANALYZE
}

ensure_kubernetes_validate
ensure_systemd_analyze
