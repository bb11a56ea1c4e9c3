# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Symmetric OpenPGP encryption with gpg, streamed, as the contract's ``gpg --symmetric --cipher-algo AES256``.

The files are what ``gpg --decrypt`` opens. The passphrase stays in this process's memory
and reaches gpg through a pipe it inherits (``--passphrase-fd``): never argv, never the
environment, never a file. Each gpg runs with a private, temporary home directory, so the
operator's keyrings and agent are untouched and no passphrase is cached after the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import read_private_file
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import last_line
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    CommandError,
    ConfigError,
)

GPG = 'gpg'
CIPHER = 'AES256'
READ_SIZE = 1 << 20
# One write into an empty pipe must never block: far below the pipe's 64 KiB.
MAX_PASSPHRASE_BYTES = 4096
WRONG_PASSPHRASE = 'Bad session key'
ENCRYPTION_FACTS = {'format': 'openpgp-symmetric', 'cipher': CIPHER, 'program': GPG}


class Passphrase:
    """A passphrase held in memory only; ``pipe()`` hands it to one gpg process."""

    def __init__(self, secret, source):
        if not secret:
            raise ConfigError('the passphrase from %s is empty' % source)
        if b'\n' in secret or b'\r' in secret:
            raise ConfigError('the passphrase from %s must be a single line' % source)
        if len(secret) > MAX_PASSPHRASE_BYTES:
            raise ConfigError('the passphrase from %s is longer than %d bytes' % (source, MAX_PASSPHRASE_BYTES))
        self._secret = secret
        self.source = source

    def __repr__(self):
        return '<Passphrase from %s>' % self.source

    @classmethod
    def from_params(cls, params):
        """The passphrase of ``encrypt_passphrase`` or ``encrypt_passphrase_file``, or None for neither."""
        text = params.get('encrypt_passphrase')
        path = params.get('encrypt_passphrase_file')
        if text and path:
            raise ConfigError('give encrypt_passphrase or encrypt_passphrase_file, not both')
        if not text and not path:
            return None
        if shutil.which(GPG) is None:
            raise ConfigError('gpg is not installed on this node; install the gnupg package to encrypt or '
                              'decrypt backups')
        if text:
            return cls(text.encode('utf-8'), 'encrypt_passphrase')
        # The first line, as gpg --passphrase-file reads it.
        content = read_private_file(path, 'encrypt_passphrase_file')
        first_line = content.split(b'\n', 1)[0].rstrip(b'\r')
        return cls(first_line, 'encrypt_passphrase_file %s' % path)

    def pipe(self):
        """The read end of a pipe that holds the passphrase and a newline; the caller closes it."""
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, self._secret + b'\n')
        finally:
            os.close(write_fd)
        return read_fd


def looks_encrypted(head):
    """Whether the first bytes of a file are an OpenPGP message (binary packet or ASCII armor)."""
    return bool(head) and (head[0] & 0x80 != 0 or head.startswith(b'-----BEGIN PGP MESSAGE'))


class _GpgProcess:
    """One gpg process: private home, passphrase on an inherited fd, stderr kept for the error."""

    def __init__(self, passphrase, operation, uses_agent):
        self._uses_agent = uses_agent
        self._home = tempfile.mkdtemp(prefix='cortexreview-gpg-')
        self._stderr = tempfile.TemporaryFile(dir=self._home)
        argv = [GPG, '--homedir', self._home, '--batch', '--no-tty', '--quiet', '--no-symkey-cache',
                '--pinentry-mode', 'loopback']
        passphrase_fd = passphrase.pipe()
        try:
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                argv + ['--passphrase-fd', str(passphrase_fd)] + operation + ['--output', '-'],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, pass_fds=(passphrase_fd,),
                env=dict(os.environ, LC_ALL='C', LANGUAGE='C'))
        except OSError as exc:
            self.cleanup()
            raise ConfigError('cannot run gpg: %s' % (exc.strerror or exc)) from None
        finally:
            os.close(passphrase_fd)

    def error_text(self):
        self._stderr.seek(0)
        return self._stderr.read().decode('utf-8', 'replace')

    def stop(self):
        """Kill gpg if it still runs and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.process.wait()

    def _remove_home(self):
        # gpg --symmetric starts an agent for the private home (its socket may be under
        # /run/user): end it before deleting the home.
        if self._uses_agent and shutil.which('gpgconf'):
            subprocess.run(['gpgconf', '--homedir', self._home, '--kill', 'gpg-agent'],  # pylint: disable=subprocess-run-check
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self._home, ignore_errors=True)

    def cleanup(self):
        self._stderr.close()
        self._remove_home()


class GpgEncryptor:
    """A file-like sink: ``write()`` plain bytes, ``close()`` to finish; ``sink(bytes)`` gets the OpenPGP message.

    ``sink`` runs in a thread of its own; an error it raises ends gpg and is raised by the next
    ``write()`` or by ``close()``.
    """

    def __init__(self, passphrase, sink):
        self._sink = sink
        self._sink_error = None
        self._gpg = _GpgProcess(passphrase, ['--symmetric', '--cipher-algo', CIPHER, '--compress-algo', 'none'],
                                uses_agent=True)
        self._drainer = threading.Thread(target=self._drain, name='gpg-output', daemon=True)
        self._drainer.start()
        self._finished = False

    def _drain(self):
        stdout = self._gpg.process.stdout
        try:
            for data in iter(lambda: stdout.read1(READ_SIZE), b''):
                self._sink(data)
        except BaseException as exc:  # pylint: disable=broad-except
            self._sink_error = exc
            self._gpg.process.kill()

    def _failure(self):
        """The reason gpg stopped: the sink's error, else gpg's own."""
        self._drainer.join()
        returncode = self._gpg.process.wait()
        if self._sink_error is not None:
            return self._sink_error
        return CommandError('gpg --symmetric failed (exit %s): %s'
                            % (returncode, last_line(self._gpg.error_text()) or 'no message'), rc=returncode)

    def write(self, data):
        try:
            self._gpg.process.stdin.write(data)
        except (BrokenPipeError, ValueError, OSError):
            raise self._failure() from None

    def close(self):
        try:
            try:
                self._gpg.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            self._drainer.join()
            returncode = self._gpg.process.wait()
            if returncode != 0 or self._sink_error is not None:
                raise self._failure()
        finally:
            self.abort()

    def abort(self):
        if self._finished:
            return
        self._finished = True
        self._gpg.stop()
        self._drainer.join()
        self._gpg.cleanup()


def decrypted(chunks, passphrase, name):
    """The plain bytes of an OpenPGP message given as ``chunks``; raises BackupFileError when gpg cannot decrypt.

    gpg checks the message's integrity (MDC) only at its end, so the last chunk is followed by
    that verdict: a consumer must read to the end before it trusts what it got.
    """
    gpg = _GpgProcess(passphrase, ['--no-autostart', '--decrypt'], uses_agent=False)
    feed_error = []

    def feed():
        try:
            for data in chunks:
                gpg.process.stdin.write(data)
        except (BrokenPipeError, ValueError):
            return  # gpg stopped reading (wrong passphrase, killed): its exit status tells why
        except BaseException as exc:  # pylint: disable=broad-except
            feed_error.append(exc)
            gpg.process.kill()
            return
        finally:
            try:
                gpg.process.stdin.close()
            except OSError:
                pass

    feeder = threading.Thread(target=feed, name='gpg-input', daemon=True)
    feeder.start()
    try:
        stdout = gpg.process.stdout
        yield from iter(lambda: stdout.read1(READ_SIZE), b'')
        returncode = gpg.process.wait()
        feeder.join()
        if feed_error:
            raise feed_error[0]
        if returncode != 0:
            message = gpg.error_text()
            if WRONG_PASSPHRASE in message:
                raise BackupFileError('cannot decrypt %s: wrong passphrase (gpg: %s)' % (name, WRONG_PASSPHRASE))
            raise BackupFileError('cannot decrypt %s: %s' % (name, last_line(message) or 'gpg exit %s' % returncode),
                                  rc=returncode)
    finally:
        gpg.stop()
        feeder.join()
        gpg.cleanup()
