# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # The options every point-in-time recovery module shares (PITR_OPTIONS).
    DOCUMENTATION = r'''
options:
  container:
    description:
      - Name or ID of the running database container. C(psql) runs inside it through the Docker API; the receiver
        and PostgreSQL's tools (C(pg_receivewal), C(pg_basebackup), ...) run in containers made from its image, on
        its first network.
    type: str
    default: cortexreview-supabase-db
  backup_dir:
    description:
      - The backup directory; the WAL archive and the base backups live in its C(pitr) subdirectory (mode C(0700),
        files C(0600)).
    type: path
    required: true
  login_user:
    description:
      - PostgreSQL role to connect as; also the role the receiver and the tools stream WAL with, so it needs the
        C(REPLICATION) attribute (or superuser).
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). It is kept in C(<backup_dir>/pitr/.pgpass) (mode C(0600)), which the receiver and
        the tools read through E(PGPASSFILE); it never reaches a command line, an environment or a result.
      - Not needed once that file exists.
    type: str
  docker_host:
    description:
      - Docker engine to talk to, for example V(unix:///var/run/docker.sock). Default is E(DOCKER_HOST) or the local
        socket. The engine must run on the managed node, where O(backup_dir) is.
    type: str
  slot:
    description:
      - The physical replication slot the receiver streams from. Lower-case letters, digits and C(_).
    type: str
    default: cortexreview_pitr
  lock_timeout:
    description:
      - Seconds to wait for C(<backup_dir>/pitr/.lock), which base backups, retention, restores and the archive's
        setup hold so they never overlap.
    type: int
    default: 600
  metrics_file:
    description:
      - Prometheus textfile-collector file updated with the samples of kind C(pitr).
    type: path
requirements:
  - The Python package C(docker) on the managed node.
'''
