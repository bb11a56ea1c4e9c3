#!/usr/bin/env bash
# cortexreview test bed, Supabase profile: the DB container's entrypoint. Like the
# supabase/postgres image's pgsodium_getkey script, it generates the Vault/pgsodium root key
# on the db-config volume when it is missing (at every start: a restored key is kept, a
# lost one is silently replaced by a new one, as on a new Supabase host), then runs the DB
# image's own entrypoint.
set -Eeo pipefail

key_dir=/etc/postgresql-custom
key_file="$key_dir/pgsodium_root.key"

if [ "$(id -u)" = 0 ] && [ ! -s "$key_file" ]; then
	tmp="$(umask 077; mktemp "$key_dir/.pgsodium_root.key.XXXXXX")"
	head -c 32 /dev/urandom | od -A n -t x1 | tr -d ' \n' > "$tmp"
	chown postgres:postgres "$tmp"
	chmod 0600 "$tmp"
	mv -f "$tmp" "$key_file"
	printf '%s [entrypoint] generated a new root key %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$key_file" >&2
fi
chown postgres:postgres "$key_dir"
exec docker-entrypoint.sh "$@"
