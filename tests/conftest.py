"""Every Ray a test starts binds 127.0.0.1 and sends traffic only to this machine.

Set here, at the very start of the session: Ray resolves and caches the node address
the first time it is imported, before any fixture could still change it.
"""

import os

from cluster.local_ray import LOOPBACK_ENV

os.environ.update(LOOPBACK_ENV)
