# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""Continuous WAL archiving: the server made ready for it, the slot, and the receiver container.

A run first reads everything and plans what differs from the wanted state; a change that needs a
restart of the database is refused unless allowed, before anything is touched. Check mode stops
after the plan, so it predicts the real run.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    CommandError,
    ConfigError,
    DockerError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr import (
    RECEIVER_APPLICATION,
    PitrLock,
    PitrServer,
    PitrSettings,
    ReceiverContainer,
    db_network,
    hba_errors,
    hba_line,
    replication_rule,
    write_pgpass,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_container import DbContainer

SIZE_PATTERN = re.compile(r'^\s*(-1|\d+)\s*(kB|MB|GB|TB)?\s*$')
SIZE_UNITS_KB = {'kB': 1, 'MB': 1024, 'GB': 1024 ** 2, 'TB': 1024 ** 3}
# The receiver, and pg_basebackup -X stream's two connections.
SENDERS_NEEDED = 3
SUMMARIZE_WAL_VERSION = 170000
RESTART_STOP_TIMEOUT = 120
RESTART_READY_TIMEOUT = 300
STREAMING_TIMEOUT = 60
RELOAD_TIMEOUT = 10
POLL_SECONDS = 0.5
# Set there, ALTER SYSTEM cannot change a setting.
FIXED_SOURCES = ('command line', 'override')


def parse_size_mb(value):
    """A PostgreSQL size ('10GB', '512MB', '1024', -1) as whole megabytes (the unit of max_slot_wal_keep_size)."""
    match = SIZE_PATTERN.match(str(value))
    if not match:
        raise ConfigError('max_slot_wal_keep_size %r is not a size such as 10GB, 512MB or -1' % (value,))
    number = int(match.group(1))
    if number == -1:
        if match.group(2):
            raise ConfigError('max_slot_wal_keep_size %r: -1 (no limit) takes no unit' % (value,))
        return -1
    kilobytes = number * SIZE_UNITS_KB[match.group(2) or 'MB']
    if kilobytes % 1024:
        raise ConfigError('max_slot_wal_keep_size %r is not a whole number of megabytes' % (value,))
    return kilobytes // 1024


class PitrArchiveSettings(PitrSettings):
    """pitr_archive's options: the common ones plus state, allow_restart and max_slot_wal_keep_size."""

    def __init__(self, params):
        super().__init__(params)
        self.state = params.get('state') or 'present'
        self.allow_restart = bool(params.get('allow_restart'))
        self.max_slot_wal_keep_size_mb = parse_size_mb(params.get('max_slot_wal_keep_size') or '10GB')
        if self.state not in ('present', 'absent'):
            raise ConfigError('state must be present or absent, not %r' % (self.state,))
        if self.state == 'present' and self.login_password is None and not os.path.exists(self.layout.pgpass):
            raise ConfigError('login_password is required: the receiver connects over the network with it '
                              '(kept in %s, mode 0600)' % self.layout.pgpass)


def wanted_settings(version_num, current, others, slot_exists, slot_count, keep_size_mb):
    """The settings to change: [(name, value, needs_restart, now)], and the ones we cannot change.

    ``current`` is PitrServer.settings(); ``others`` the WAL senders that are not our receiver.
    ``wal_level`` is only ever raised (logical stays logical).
    """
    changes = []
    if current['wal_level']['setting'] == 'minimal':
        changes.append(('wal_level', 'replica', True, 'minimal'))
    senders = others + SENDERS_NEEDED
    if int(current['max_wal_senders']['setting']) < senders:
        changes.append(('max_wal_senders', str(senders), True, current['max_wal_senders']['setting']))
    slots = slot_count + (0 if slot_exists else 1)
    if int(current['max_replication_slots']['setting']) < slots:
        changes.append(('max_replication_slots', str(slots), True, current['max_replication_slots']['setting']))
    if int(current['max_slot_wal_keep_size']['setting']) != keep_size_mb:
        wanted = '%dMB' % keep_size_mb if keep_size_mb >= 0 else '-1'
        changes.append(('max_slot_wal_keep_size', wanted, False, current['max_slot_wal_keep_size']['setting'] + 'MB'))
    if version_num >= SUMMARIZE_WAL_VERSION and current['summarize_wal']['setting'] != 'on':
        changes.append(('summarize_wal', 'on', False, current['summarize_wal']['setting']))
    fixed = [(name, current[name]['source']) for name, _value, _restart, _now in changes
             if current[name]['source'] in FIXED_SOURCES]
    return changes, fixed


def describe_setting(change):
    name, value, _restart, now = change
    return '%s = %s (now %s)' % (name, value, now)


class PitrArchiveBackend(Backend):
    """pitr_archive: state=present makes the server archive into ``<backup_dir>/pitr/wal``; absent stops it."""

    settings_class = PitrArchiveSettings

    def run(self):
        started = time.monotonic()
        settings = self.settings
        db = DbContainer(settings.target.docker_api, None, name=settings.container)
        if not db.running:
            raise DockerError('container %s is not running; archiving is set up on a running database' % db.name)
        server = PitrServer(settings.target)
        receiver = ReceiverContainer(db, settings)
        if settings.state == 'absent':
            result = self._absent(server, receiver)
        else:
            result = self._present(db, server, receiver)
        result.update({'changed': bool(result['changes']), 'state': settings.state, 'slot': settings.slot,
                       'receiver': receiver.name, 'wal_dir': settings.layout.wal,
                       'duration': round(time.monotonic() - started, 3)})
        verb = 'Would change' if self.check_mode else 'Changed'
        result['msg'] = ('%s: %s' % (verb, '; '.join(result['changes'])) if result['changes']
                         else 'WAL archiving is already %s' % ('on' if settings.state == 'present' else 'off'))
        return result

    # state=present

    def _present(self, db, server, receiver):
        settings = self.settings
        plan = self._plan(db, server, receiver)
        restart = [change for change in plan['settings'] if change[2]]
        if restart and not settings.allow_restart:
            raise ConfigError('archiving needs a restart of container %s for %s; nothing was changed: set '
                              'allow_restart: true (role: supabase_backup_pitr_allow_restart) to let this run '
                              'restart it, or set them and restart it yourself'
                              % (db.name, ', '.join(describe_setting(change) for change in restart)),
                              needs_restart=[change[0] for change in restart])
        result = {'changes': plan['changes'], 'restarted': False, 'hba_file': plan['hba_file'],
                  'server_version_num': plan['version_num'], 'streaming': plan['streaming']}
        if self.check_mode:
            if restart:
                result['changes'].append('restart container %s' % db.name)
            return result
        settings.layout.ensure()
        with PitrLock(settings.layout, settings.lock_timeout):
            write_pgpass(settings.layout, settings.login_user, settings.login_password)
            if plan['hba_append']:
                self._append_hba(db, server, plan)
            if plan['settings']:
                result['restarted'] = self._apply_settings(db, server, plan)
                if result['restarted']:
                    result['changes'].append('restart container %s' % db.name)
            if plan['slot_create']:
                server.create_slot(settings.slot)
            self._apply_receiver(receiver, plan['receiver'])
            self._wait_streaming(server, receiver)
        result['streaming'] = True
        return result

    def _plan(self, db, server, receiver):
        """Read everything; the changes a real run makes, in the order it makes them."""
        settings = self.settings
        layout = settings.layout
        changes = layout.ensure(check_mode=True)
        if write_pgpass(layout, settings.login_user, settings.login_password, check_mode=True):
            changes.append('write %s' % layout.pgpass)
        version_num = server.version_num()
        self._check_role(server)
        hba_file = server.hba_file()
        rules = server.hba_rules()
        errors = hba_errors(rules)
        if errors:
            raise ConfigError('%s has errors, so the server would refuse any change to it; fix them first: %s'
                              % (hba_file, '; '.join(errors)))
        subnet = db_network(receiver.db_info)[2]
        rule = replication_rule(rules, settings.login_user, subnet)
        if rule is not None and rule['auth_method'] == 'reject':
            raise ConfigError('%s line %s rejects replication connections of %s from the container network; '
                              'remove or narrow it' % (hba_file, rule['line_number'], settings.login_user))
        hba_append = rule is None
        if hba_append:
            changes.append('append to %s: %s' % (hba_file, hba_line(settings.login_user)))
        slot = server.slot(settings.slot)
        if slot is not None and slot['slot_type'] != 'physical':
            raise ConfigError('replication slot %s exists and is %s; choose another slot name'
                              % (settings.slot, slot['slot_type']))
        senders = server.senders()
        others = len([sender for sender in senders if sender['application_name'] != RECEIVER_APPLICATION])
        names = ['wal_level', 'max_wal_senders', 'max_replication_slots', 'max_slot_wal_keep_size']
        if version_num >= SUMMARIZE_WAL_VERSION:
            names.append('summarize_wal')
        current = server.settings(names)
        setting_changes, fixed = wanted_settings(version_num, current, others, slot is not None, server.slot_count(),
                                                 settings.max_slot_wal_keep_size_mb)
        if fixed:
            raise ConfigError('archiving needs %s, but %s set on the server command line, where ALTER SYSTEM cannot '
                              'change it: change it where the container is defined (compose file); nothing was changed'
                              % (', '.join(describe_setting(change) for change in setting_changes
                                           if change[0] in dict(fixed)),
                                 'it is' if len(fixed) == 1 else 'they are'))
        changes.extend('set %s' % describe_setting(change) for change in setting_changes)
        if slot is None:
            changes.append('create physical replication slot %s' % settings.slot)
        streaming = bool(slot and slot['active']) and any(
            sender['application_name'] == RECEIVER_APPLICATION and sender['state'] == 'streaming' for sender in senders)
        receiver_action = self._receiver_action(receiver, streaming)
        if receiver_action:
            changes.append('%s receiver container %s' % (receiver_action, receiver.name))
        return {'changes': changes, 'version_num': version_num, 'hba_file': hba_file, 'hba_append': hba_append,
                'subnet': subnet, 'settings': setting_changes, 'slot_create': slot is None,
                'receiver': receiver_action, 'streaming': streaming}

    def _check_role(self, server):
        user = self.settings.login_user
        role = server.role(user)
        if role is None:
            raise ConfigError('login_user %s does not exist on the server' % user)
        superuser, replication = role
        if not (superuser or replication):
            raise ConfigError('login_user %s may not stream WAL: run ALTER ROLE "%s" WITH REPLICATION, or use a '
                              'role that has it' % (user, user))

    @staticmethod
    def _receiver_action(receiver, streaming):
        state = receiver.state()
        if state == 'missing':
            return 'create'
        if state == 'outdated':
            return 'recreate'
        if state == 'stopped' or not streaming:
            # Crash-looping or stuck: a restart now beats the restart policy's back-off.
            return 'restart'
        return None

    def _append_hba(self, db, server, plan):
        settings = self.settings
        server.append_hba_line(db.api, db.id, plan['hba_file'], hba_line(settings.login_user))
        rules = server.hba_rules()
        errors = hba_errors(rules)
        if errors or replication_rule(rules, settings.login_user, plan['subnet']) is None:
            raise CommandError('the line appended to %s does not read back as a replication rule for %s%s'
                               % (plan['hba_file'], settings.login_user,
                                  ': ' + '; '.join(errors) if errors else ''))
        server.reload()

    def _apply_settings(self, db, server, plan):
        """ALTER SYSTEM, then reload or restart; returns whether the container was restarted."""
        for name, value, _restart, _now in plan['settings']:
            server.alter_system(name, value)
        restart = any(change[2] for change in plan['settings'])
        if restart:
            db.restart(RESTART_STOP_TIMEOUT)
            db.wait_ready(RESTART_READY_TIMEOUT)
        else:
            server.reload()
        self._check_applied(server, plan['settings'])
        return restart

    def _check_applied(self, server, changes):
        deadline = time.monotonic() + RELOAD_TIMEOUT
        names = [change[0] for change in changes]
        while True:
            current = server.settings(names)
            missing = [name for name, value, _restart, _now in changes
                       if not _setting_is(current[name], value)]
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise CommandError('the server does not use the new %s after the %s'
                                   % (', '.join('%s (still %s)' % (name, current[name]['setting']) for name in missing),
                                      'restart' if any(change[2] for change in changes) else 'reload'))
            time.sleep(POLL_SECONDS)

    def _apply_receiver(self, receiver, action):
        if action == 'create':
            receiver.create()
        elif action == 'recreate':
            receiver.remove()
            receiver.create()
        elif action == 'restart':
            receiver.restart()

    def _wait_streaming(self, server, receiver):
        deadline = time.monotonic() + STREAMING_TIMEOUT
        while True:
            slot = server.slot(self.settings.slot)
            senders = server.senders()
            if slot and slot['active'] and any(sender['application_name'] == RECEIVER_APPLICATION
                                               and sender['state'] == 'streaming' for sender in senders):
                return
            if time.monotonic() >= deadline:
                raise CommandError('the receiver container %s does not stream WAL %ss after the setup: %s'
                                   % (receiver.name, STREAMING_TIMEOUT, receiver.log_tail() or 'no log'))
            time.sleep(POLL_SECONDS)

    # state=absent

    def _absent(self, server, receiver):
        settings = self.settings
        changes = []
        exists = receiver.inspect() is not None
        if exists:
            changes.append('remove receiver container %s' % receiver.name)
        slot = server.slot(settings.slot)
        if slot is not None:
            changes.append('drop replication slot %s' % settings.slot)
        if not self.check_mode:
            if exists:
                receiver.remove()
            if slot is not None:
                self._drop_slot(server)
        return {'changes': changes, 'restarted': False}

    def _drop_slot(self, server):
        # The walsender of the removed receiver may need a moment to notice its connection is gone.
        deadline = time.monotonic() + STREAMING_TIMEOUT
        while True:
            slot = server.slot(self.settings.slot)
            if slot is None:
                return
            if not slot['active']:
                server.drop_slot(self.settings.slot)
                return
            if time.monotonic() >= deadline:
                raise CommandError('replication slot %s is still in use %ss after the receiver was removed; it is '
                                   'kept (see pg_stat_replication for who uses it)' % (self.settings.slot,
                                                                                       STREAMING_TIMEOUT))
            time.sleep(POLL_SECONDS)


def _setting_is(current, value):
    if current['unit'] == 'MB' and value.endswith('MB'):
        return current['setting'] == value[:-2]
    return current['setting'] == value
