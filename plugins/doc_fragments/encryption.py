# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  encrypt_passphrase:
    description:
      - Passphrase for gpg symmetric encryption (AES256), as the contract's C(gpg --symmetric --cipher-algo AES256).
      - When writing a backup, it is encrypted as it streams to disk, and its name gets C(.gpg) added; no
        unencrypted copy is ever written. C(gpg --decrypt) opens it.
      - When reading a backup, it decrypts a C(.gpg) backup; a plain backup is read as it is. A wrong
        passphrase fails before anything is stopped or changed.
      - The passphrase reaches gpg through an inherited pipe (C(--passphrase-fd)), never a command line or
        an environment variable; gpg runs with a private temporary home, so nothing is cached.
      - Needs C(gpg) (Debian package C(gnupg)) on the node that runs the module.
      - Mutually exclusive with O(encrypt_passphrase_file).
    type: str
  encrypt_passphrase_file:
    description:
      - File on the node whose first line is the passphrase, as for O(encrypt_passphrase).
      - It must be owned by root or the user running the module and not be accessible to group or others.
    type: path
'''
