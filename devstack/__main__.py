"""``python -m devstack`` (what ``make up`` runs): see :mod:`devstack.up`."""

import sys

from devstack.up import up

sys.exit(up())
