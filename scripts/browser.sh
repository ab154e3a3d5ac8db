# Sourced by scripts/test: what digest's browser test (apps/digest/tests/browser.rs) needs,
# installed when missing, and named to the test through environment variables (the test says
# it did not run when these are unset):
# - SHOAL_TEST_CHROMIUM: Debian's chromium (installed with apt-get);
# - SHOAL_TEST_PLAYWRIGHT_DIR: apps/digest/tests/browser, with playwright-core in its
#   node_modules (`npm ci` from the committed package-lock.json; Playwright never downloads a
#   browser of its own here: it drives Debian's).
# Node.js 20 or later must be on the PATH (it comes with the machine). Quick when everything
# is installed already: no apt-get, no npm.

ensure_chromium() {
    if ! command -v chromium >/dev/null 2>&1; then
        echo "scripts/test: installing chromium" >&2
        if ! apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null 2>&1; then
            apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
            apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null
        fi
    fi
    SHOAL_TEST_CHROMIUM="$(command -v chromium)"
    export SHOAL_TEST_CHROMIUM
}

ensure_playwright() {
    local dir
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../apps/digest/tests/browser" && pwd)"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
    if [ "$major" -lt 20 ]; then
        echo "scripts/browser.sh: the browser test needs Node.js 20 or later on the PATH" \
             "(found: $(node --version 2>/dev/null || echo none))" >&2
        return 1
    fi
    # node_modules/.installed-lock is the package-lock.json that the last `npm ci` installed.
    if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock"; then
        echo "scripts/test: installing playwright-core into $dir/node_modules" >&2
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || return 1
        cp "$dir/package-lock.json" "$dir/node_modules/.installed-lock"
    fi
    export SHOAL_TEST_PLAYWRIGHT_DIR="$dir"
}

ensure_chromium
ensure_playwright
