"""Environment every Ray node of a giantserve cluster starts with (local or on GPU nodes).

The values, and why each is there, live in cluster/data/serving_env.yaml, which the
Terraform RayCluster spec reads too.
"""

from pathlib import Path

import yaml

SERVING_ENV: dict[str, str] = yaml.safe_load(
    (Path(__file__).parent / "data" / "serving_env.yaml").read_text()
)
