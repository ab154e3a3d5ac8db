# Sourced by scripts/test: makes sure every backing service the tests use is running, and
# exports the URLs the tests read. PostgreSQL and Redis are expected on this machine already;
# memcached is installed and started here when missing.

ensure_memcached() {
    if ! command -v memcached >/dev/null 2>&1; then
        echo "scripts/test: installing memcached" >&2
        if ! apt-get -o DPkg::Lock::Timeout=300 install -y -qq memcached >/dev/null 2>&1; then
            apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
            apt-get -o DPkg::Lock::Timeout=300 install -y -qq memcached >/dev/null
        fi
    fi
    if ! (exec 3<>/dev/tcp/127.0.0.1/11211) 2>/dev/null; then
        memcached -d -u "$(id -un)" -l 127.0.0.1 -p 11211 -m 64
        for _ in $(seq 1 100); do
            (exec 3<>/dev/tcp/127.0.0.1/11211) 2>/dev/null && break
            sleep 0.1
        done
    fi
}

ensure_memcached

export SHOAL_TEST_DATABASE_URL="${SHOAL_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export SHOAL_TEST_REDIS_URL="${SHOAL_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export SHOAL_TEST_MEMCACHED_URL="${SHOAL_TEST_MEMCACHED_URL:-memcache://127.0.0.1:11211}"
