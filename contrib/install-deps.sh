#!/bin/sh
# Install every Debian package sluice needs to build, test and benchmark.
# Idempotent; runs as root, or through sudo otherwise. Postfix is installed
# with debconf "No configuration" so that it does not start an MTA on port
# 25 (the benchmark only uses its smtp-sink and smtp-source).
set -eu

PACKAGES="build-essential autoconf automake libtool pkg-config
libssl-dev libevent-dev libc-ares-dev libopendkim-dev liblmdb-dev
libcurl4-openssl-dev libjansson-dev libcmocka-dev
python3-pytest python3-aiosmtpd python3-dkim python3-dnslib
openssl swaks curl postfix opendkim opendkim-tools"

if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "install-deps.sh: not root and sudo is not available" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS="-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"

# Answer Postfix's questions before it is installed.
printf '%s\n' \
	"postfix postfix/main_mailer_type select No configuration" \
	"postfix postfix/mailname string localhost" |
	$SUDO env DEBIAN_FRONTEND=noninteractive debconf-set-selections

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	echo "install-deps.sh: all packages already installed"
else
	echo "install-deps.sh: installing:$missing"
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
	# shellcheck disable=SC2086
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install $APT_OPTS --no-install-recommends $missing
fi

exit 0
