# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  container:
    description:
      - Name or ID of the running database container. The PostgreSQL client programs run inside it
        through the Docker API, connecting over the container's local socket as the official image allows.
      - Set to an empty string to run the client programs on the managed node itself against
        O(login_host)/O(login_port) (or the local socket).
    type: str
    default: cortexreview-supabase-db
  db:
    description:
      - Name of the database.
    type: str
    default: postgres
    aliases: [login_db]
  login_user:
    description:
      - PostgreSQL role to connect as.
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). It reaches only the environment of the one client process that
        needs it (E(PGPASSWORD)), never its command line, logs or results.
      - Not needed for the container's local socket, which the official image trusts.
    type: str
  login_host:
    description:
      - Host name, IP address or socket directory of the server. Default is the local socket.
    type: str
  login_port:
    description:
      - Server port. Default is PostgreSQL's (5432).
    type: int
  docker_host:
    description:
      - Docker engine to talk to, for example V(unix:///var/run/docker.sock) or V(tcp://127.0.0.1:2375).
      - Default is E(DOCKER_HOST) or the local socket.
    type: str
  pg_bin_dir:
    description:
      - Directory holding C(pg_dump) and C(psql) on the managed node, when O(container) is empty.
      - Default is to look them up on E(PATH).
    type: path
requirements:
  - The Python package C(docker) on the managed node when O(container) is set.
  - PostgreSQL client programs (C(pg_dump), C(psql)) in the container or, when O(container) is empty, on the node.
'''
