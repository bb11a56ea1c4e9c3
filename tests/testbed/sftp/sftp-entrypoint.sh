#!/usr/bin/env bash
# Authorise AUTHORIZED_KEY (a public key) for "offsite", make host keys, and run sshd in the foreground.
set -euo pipefail
[ -n "${AUTHORIZED_KEY:-}" ] || { echo "AUTHORIZED_KEY is not set" >&2; exit 1; }
install -d -o offsite -g offsite -m 0700 /home/offsite/.ssh /home/offsite/backups
printf '%s\n' "$AUTHORIZED_KEY" > /home/offsite/.ssh/authorized_keys
chown offsite:offsite /home/offsite/.ssh/authorized_keys
chmod 0600 /home/offsite/.ssh/authorized_keys
ssh-keygen -A >/dev/null
{
	echo 'PasswordAuthentication no'
	echo 'KbdInteractiveAuthentication no'
	echo 'PermitRootLogin no'
	echo 'Subsystem sftp internal-sftp'
	if [ "${SFTP_MODE:-shell}" = sftp-only ]; then
		echo 'Match User offsite'
		echo '    ForceCommand internal-sftp'
	fi
} > /etc/ssh/sshd_config.d/cortexreview.conf
sed -i 's/^Subsystem/#Subsystem/' /etc/ssh/sshd_config
exec /usr/sbin/sshd -D -e
