# Sourced by scripts/test: a Docker Engine in swarm mode on this machine, for the tests that run
# `shoal export swarm`'s files on it (crates/shoal/tests/it/swarm.rs). It
# - installs Debian's docker.io (Engine 20.10) and busybox-static (the test image's /bin/sh)
#   when missing;
# - starts dockerd in the background when no daemon answers (its log: $SHOAL_TEST_DOCKERD_LOG),
#   and waits until `docker info` answers;
# - picks a docker CLI that can deploy jobs (`replicated-job` needs 23.0 or later; Debian's
#   20.10 cannot) and pins it to the daemon's API version (DOCKER_API_VERSION), so a newer
#   client talks to the older daemon;
# - makes a one-node swarm (`docker swarm init --advertise-addr 127.0.0.1`) when the daemon is
#   in none; SHOAL_TEST_SWARM_LEAVE=1 then tells the tests to leave it when they are done.
# It exports SHOAL_TEST_SWARM=1 and SHOAL_TEST_DOCKER (the CLI) when all that worked, and
# SHOAL_TEST_SWARM_NOT_RUN (the reason) when not; the tests print NOT RUN with it.

swarm_not_run() {
    echo "scripts/test: the swarm tests will not run: $1" >&2
    export SHOAL_TEST_SWARM_NOT_RUN="$1"
    unset SHOAL_TEST_SWARM
}

ensure_swarm() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    [ -x /bin/busybox ] || missing+=(busybox-static)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "scripts/test: installing ${missing[*]}" >&2
        if ! apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null 2>&1; then
            apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
            if ! apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null 2>&1; then
                swarm_not_run "cannot install ${missing[*]} with apt-get"
                return
            fi
        fi
    fi

    # Debian's client, which matches Debian's daemon, for talking to the daemon before the
    # API version is known.
    local debian=/usr/bin/docker
    [ -x "$debian" ] || debian="$(command -v docker || true)"
    if [ -z "$debian" ]; then
        swarm_not_run "no docker client is installed"
        return
    fi
    export SHOAL_TEST_DOCKERD_LOG="${SHOAL_TEST_DOCKERD_LOG:-/var/log/shoal-test-dockerd.log}"
    # Every call to the daemon is bounded: a socket whose daemon is stuck must not hang the run.
    if ! DOCKER_API_VERSION= timeout 10 "$debian" info >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ]; then
            swarm_not_run "no Docker daemon answers, and starting one needs root"
            return
        fi
        echo "scripts/test: starting dockerd (log: $SHOAL_TEST_DOCKERD_LOG)" >&2
        (setsid dockerd >"$SHOAL_TEST_DOCKERD_LOG" 2>&1 &)
        local deadline=$((SECONDS + 90))
        until DOCKER_API_VERSION= timeout 5 "$debian" info >/dev/null 2>&1; do
            if [ $SECONDS -ge $deadline ]; then
                swarm_not_run "dockerd did not answer within 90 s: $(tail -n 3 "$SHOAL_TEST_DOCKERD_LOG" | tr '\n' ' ')"
                return
            fi
            sleep 0.5
        done
    fi
    local api
    api="$(DOCKER_API_VERSION= timeout 10 "$debian" version --format '{{.Server.APIVersion}}' 2>/dev/null || true)"
    export DOCKER_API_VERSION="$api"

    local client="" candidate version
    for candidate in $(type -aP docker) /usr/local/bin/docker /usr/bin/docker; do
        version="$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null)" || continue
        if [ "${version%%.*}" -ge 23 ] 2>/dev/null; then
            client="$candidate"
            break
        fi
    done
    if [ -z "$client" ]; then
        swarm_not_run "no docker CLI of version 23.0 or later (the first that deploys a replicated-job) is installed; Debian's is $("$debian" version --format '{{.Client.Version}}' 2>/dev/null)"
        return
    fi

    if [ "$(timeout 10 "$client" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" != active ]; then
        local out
        if ! out="$(timeout 60 "$client" swarm init --advertise-addr 127.0.0.1 2>&1)"; then
            swarm_not_run "docker swarm init failed: ${out%%$'\n'*}"
            return
        fi
        export SHOAL_TEST_SWARM_LEAVE=1
    fi
    export SHOAL_TEST_DOCKER="$client"
    export SHOAL_TEST_SWARM=1
    unset SHOAL_TEST_SWARM_NOT_RUN
}

ensure_swarm
