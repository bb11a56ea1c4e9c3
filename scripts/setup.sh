#!/usr/bin/env bash
# Prepare a fresh Debian bookworm machine (run as root) for the test suite:
#   1. apt packages: docker.io debootstrap docker-compose cron python3-venv gzip gnupg
#   2. promtool (alert-rule tests): only the binary, extracted from Debian's
#      prometheus package into $PROMTOOL_DIR (default /opt/cortexreview/promtool)
#      and linked as /usr/local/bin/promtool -- no Prometheus server installed
#   3. a running Docker daemon (starts dockerd in the background if needed)
#   4. Python requirements (requirements-dev.txt) -- into the current python3,
#      or into a venv ($CORTEXREVIEW_VENV, default /opt/cortexreview/venv)
#      when python3 is Debian's externally-managed interpreter
#   5. the test-bed images (tests/testbed/build-images.sh)
#   6. the test-bed stack, up and seeded (tests/testbed/stack.sh up; CORTEXREVIEW_TESTBED=NAME
#      for another stack than the default `cortexreview`)
# Idempotent: every step is skipped / quick when already done.
# Environment: PYTHON=/path/to/python to force the interpreter;
#              SETUP_SKIP_STACK=1 to stop after building the images.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../tests/testbed/lib.sh
. "$REPO/tests/testbed/lib.sh"
cd "$REPO"

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (apt-get, dockerd, debootstrap)"
T0=$SECONDS

# ------------------------------------------------------------ 1. apt ------
export DEBIAN_FRONTEND=noninteractive
APT_PKGS=(docker.io debootstrap docker-compose cron python3-venv gzip shellcheck gnupg openssh-client)
missing=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "apt-get install ${missing[*]}"
	apt-get update -qq
	apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" >/dev/null
else
	log "apt packages present"
fi

# -------------------------------------------------------- 2. promtool -----
# `apt-get install prometheus` would also install and start a server: take only
# promtool out of the package (it needs nothing but libc).
PROMTOOL_DIR="${PROMTOOL_DIR:-/opt/cortexreview/promtool}"
if [ -x "$PROMTOOL_DIR/promtool" ] && [ "$(readlink /usr/local/bin/promtool || true)" = "$PROMTOOL_DIR/promtool" ]; then
	log "promtool present: $("$PROMTOOL_DIR/promtool" --version 2>&1 | head -1)"
else
	log "promtool: extracting it from Debian's prometheus package into $PROMTOOL_DIR"
	deb_dir=$(mktemp -d "${TMPDIR:-/tmp}/cortexreview-promtool.XXXXXX")
	chown _apt "$deb_dir" 2>/dev/null || true # apt-get download drops to _apt
	(cd "$deb_dir" && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; })
	dpkg-deb -x "$deb_dir"/prometheus_*.deb "$deb_dir/root"
	mkdir -p "$PROMTOOL_DIR"
	install -m 0755 "$deb_dir/root/usr/bin/promtool" "$PROMTOOL_DIR/promtool.new"
	mv -f "$PROMTOOL_DIR/promtool.new" "$PROMTOOL_DIR/promtool"
	rm -rf "$deb_dir"
	ln -sfn "$PROMTOOL_DIR/promtool" /usr/local/bin/promtool
	"$PROMTOOL_DIR/promtool" --version >/dev/null || die "promtool does not run"
	log "promtool installed: $("$PROMTOOL_DIR/promtool" --version 2>&1 | head -1)"
fi

# --------------------------------------------------------- 3. dockerd -----
# The test bed's stacks publish their DB on 127.0.0.1:54322 and 55000-55999, inside the kernel's range of
# ephemeral ports: a client connection could hold one just when a stack starts (bind: address already in
# use). Reserved, the kernel never hands them out (best effort: a container may not allow it).
if [ -w /proc/sys/net/ipv4/ip_local_reserved_ports ]; then
	echo 54322,55000-55999 >/proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null ||
		log "could not reserve the test bed's ports from the ephemeral range"
fi
if docker info >/dev/null 2>&1; then
	log "docker daemon running"
else
	if pgrep -x dockerd >/dev/null 2>&1; then
		log "dockerd process exists, waiting for it to answer"
	else
		log "starting dockerd in the background (log: /var/log/cortexreview-dockerd.log)"
		setsid nohup dockerd >/var/log/cortexreview-dockerd.log 2>&1 </dev/null &
	fi
	for _ in $(seq 1 60); do
		docker info >/dev/null 2>&1 && break
		sleep 1
	done
	if ! docker info >/dev/null 2>&1; then
		tail -n 30 /var/log/cortexreview-dockerd.log >&2 2>/dev/null || true
		die "docker daemon did not come up within 60s"
	fi
	log "docker daemon up"
fi

# ---------------------------------------------------------- 4. python -----
py="${PYTHON:-$(command -v python3 || true)}"
[ -n "$py" ] || die "python3 not found"
if [ -z "${PYTHON:-}" ] && [ ! -x "$TB_VENV/bin/python" ] && tb_externally_managed "$py"; then
	log "$py is externally managed (PEP 668): creating venv $TB_VENV"
	mkdir -p "$(dirname "$TB_VENV")"
	"$py" -m venv "$TB_VENV"
fi
tb_activate_python
log "python: $PYTHON ($("$PYTHON" --version 2>&1))"
"$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
	-r "$REPO/requirements-dev.txt"
log "python requirements installed"

# ---------------------------------------------------------- 5. images -----
bash "$REPO/tests/testbed/build-images.sh"

# ----------------------------------------------------------- 6. stack -----
if [ "${SETUP_SKIP_STACK:-0}" != 1 ]; then
	bash "$REPO/tests/testbed/stack.sh" up
fi
log "setup complete in $((SECONDS - T0))s"
