#!/usr/bin/env bash
# Installs the real servers the tests run on loopback: Postfix (a normal Debian install, left
# unconfigured and not started), Exim (unpacked into /opt/whyfailed-exim, because Debian's
# postfix and exim4 packages conflict), sshd, unbound and PostgreSQL. Idempotent and
# non-interactive; run as root on Debian 12. It never starts a system-wide service: the tests
# start their own throwaway instances with their own config, spool and log folders.
set -euo pipefail

EXIM_ROOT="${WHYFAILED_EXIM_ROOT:-/opt/whyfailed-exim}"
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [ "$(id -u)" != 0 ]; then
    echo "install-test-servers: not root, skipping (tests/mta will skip)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-servers: no apt-get, skipping (tests/mta will skip)" >&2
    exit 0
fi

# apt-get with a few tries, so that one flaky mirror answer does not fail CI.
apt_retry() {
    local try
    for try in 1 2 3; do
        if apt-get "$@"; then
            return 0
        fi
        echo "install-test-servers: apt-get $1 failed (try $try of 3)" >&2
        sleep $((try * 5))
    done
    return 1
}

need_update=1
update_once() {
    if [ "$need_update" = 1 ]; then
        apt_retry update -qq
        need_update=0
    fi
}

# Keep package scripts from starting daemons (invoke-rc.d honours policy-rc.d).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

# --- Postfix --------------------------------------------------------------------------
if ! command -v postconf >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    update_once
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string rig.whyfailed.test" | debconf-set-selections
    apt_retry install -y -qq --no-install-recommends postfix openssl >/dev/null
fi
echo "postfix $(postconf -d -h mail_version 2>/dev/null || echo '?') at $(command -v postfix)"

# --- Exim (unpacked, not installed) ----------------------------------------------------
exim_bin="$EXIM_ROOT/usr/sbin/exim4"
# Debian's exim binary looks its user up by name (the exim4-base package would create it).
if ! getent passwd Debian-exim >/dev/null 2>&1; then
    getent group Debian-exim >/dev/null 2>&1 || groupadd --system Debian-exim
    useradd --system --gid Debian-exim --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin Debian-exim
fi
if [ ! -x "$exim_bin" ]; then
    update_once
    work="$(mktemp -d)"
    # apt-get download fetches as the _apt user, into the current folder.
    chmod 755 "$work"
    if getent passwd _apt >/dev/null 2>&1; then chown _apt "$work"; fi
    (
        cd "$work"
        apt_retry download -qq exim4-base exim4-daemon-light exim4-config
        # The daemon's shared libraries are ordinary packages with no conflict: install
        # those that are missing (everything exim4-daemon-light depends on, except the
        # exim4 packages themselves and debconf).
        libs=$(apt-cache depends exim4-daemon-light | awk '/^ *(\|)?Depends: /{print $2}' \
            | grep -E '^lib' | sort -u)
        if [ -n "$libs" ]; then
            # shellcheck disable=SC2086
            apt_retry install -y -qq --no-install-recommends $libs >/dev/null
        fi
        mkdir -p "$EXIM_ROOT"
        for deb in ./*.deb; do
            dpkg -x "$deb" "$EXIM_ROOT"
        done
    )
    rm -rf "$work"
fi
# The rig's configuration (written by tests/mta/exim_rig.py at this fixed path) is listed in
# the binary's TRUSTED_CONFIG_LIST, so that `exim -C` keeps its privileges and the logs are
# not filled with "exim user lost privilege for using -C option".
rig_conf="$EXIM_ROOT/rig/exim.conf"
install -d -m 755 -o root -g root "$EXIM_ROOT/rig"
trusted=/etc/exim4/trusted_configs
install -d -m 755 /etc/exim4
if ! grep -qxF "$rig_conf" "$trusted" 2>/dev/null; then
    echo "$rig_conf" >>"$trusted"
fi
chown root:root "$trusted"
chmod 644 "$trusted"

if ! "$exim_bin" -C /dev/null -bV >/dev/null 2>&1 && ! "$exim_bin" -bV >/dev/null 2>&1; then
    echo "install-test-servers: $exim_bin does not run:" >&2
    "$exim_bin" -bV >&2 || true
    exit 1
fi
echo "exim $("$exim_bin" -C /dev/null -bV 2>/dev/null | sed -n '1s/^Exim version \([^ ]*\).*/\1/p') at $exim_bin"

# --- OpenSSH server and journal tools (tests/test_sources.py) ---------------------------
# sshd is started by the tests on a loopback port with their own config and throwaway keys;
# the package's own service is kept from starting by policy-rc.d above. systemd-journal-remote
# writes real journal files that the journald source reads with journalctl; it is pinned to
# the installed systemd's version, so that installing it never upgrades systemd itself.
if [ ! -x /usr/sbin/sshd ] || [ ! -x /lib/systemd/systemd-journal-remote ]; then
    update_once
    want="openssh-server"
    if systemd_version="$(dpkg-query -W -f='${Version}' systemd 2>/dev/null)" && [ -n "$systemd_version" ]; then
        want="$want systemd-journal-remote=$systemd_version"
    fi
    # shellcheck disable=SC2086
    apt_retry install -y -qq --no-install-recommends $want >/dev/null \
        || apt_retry install -y -qq --no-install-recommends openssh-server >/dev/null
fi
echo "sshd $(/usr/sbin/sshd -V 2>&1 | head -n 1 || true) at /usr/sbin/sshd"

# --- unbound (tests/test_checks.py) ----------------------------------------------------
# A real DNS resolver that the tests start on a loopback port, with zones from
# tests/fixtures/checks/zones; the package's own service is kept from starting above.
if [ ! -x /usr/sbin/unbound ]; then
    update_once
    apt_retry install -y -qq --no-install-recommends unbound >/dev/null
fi
echo "unbound $(/usr/sbin/unbound -V 2>/dev/null | sed -n '1s/^Version //p') at /usr/sbin/unbound"

# --- PostgreSQL (tests/test_store*.py) ---------------------------------------------------
# The shared-store tests initdb a throwaway cluster of their own (tests/pg_server.py) on a
# loopback port, as the postgres user the package creates; the package's own cluster service is
# kept from starting by policy-rc.d above, and none is needed.
pg_bin="${WHYFAILED_PG_BIN:-/usr/lib/postgresql/15/bin}"
if [ ! -x "$pg_bin/initdb" ] || [ ! -x "$pg_bin/pg_ctl" ]; then
    update_once
    apt_retry install -y -qq --no-install-recommends postgresql >/dev/null
fi
if ! getent passwd postgres >/dev/null 2>&1; then
    echo "install-test-servers: the postgres user is missing; the PostgreSQL tests need it when run as root" >&2
    exit 1
fi
echo "postgresql $("$pg_bin/postgres" -V 2>/dev/null | sed -n 's/^postgres (PostgreSQL) //p') at $pg_bin"
