# Sourced by scripts/test: Debian's prometheus package (the server and promtool), which the
# metrics tests (crates/shoal/tests/it/metrics.rs) run against, installed when missing and
# named to the tests through SHOAL_TEST_PROMETHEUS and SHOAL_TEST_PROMTOOL (the tests say they
# did not run when these are unset). The package's own service is not started.

ensure_prometheus() {
    if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
        echo "scripts/test: installing prometheus" >&2
        if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
            apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null
        fi
    fi
    SHOAL_TEST_PROMETHEUS="$(command -v prometheus)"
    SHOAL_TEST_PROMTOOL="$(command -v promtool)"
    export SHOAL_TEST_PROMETHEUS SHOAL_TEST_PROMTOOL
}

ensure_prometheus
