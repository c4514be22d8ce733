"""`python -m cluster tfvars CONFIG --cloud gke|eks`: a Terraform example's sizing.auto.tfvars.

Derives the GPU node pool of terraform/modules/sizing from one model of a Serve config through
the planner, and prints it as HCL (`key = value`) or, with --json, as JSON:

    python -m cluster tfvars configs/kimi.yaml --cloud gke > \\
        terraform/examples/gke-kimi-k2.5-h200/sizing.auto.tfvars

Exit codes: 0 printed; 1 the config cannot be sized as asked (its parallelism is not the
planner's layout, nothing fits, a flag contradicts it); 2 a config that does not load or cannot
be planned (no catalog_id, CPU placement, no max_model_len / max_num_seqs).
"""

from __future__ import annotations

import argparse
import sys
import typing

from cluster.planner import InfeasiblePlanError
from cluster.tfvars import (
    Cloud,
    TfvarsError,
    format_hcl,
    format_json,
    planned_model,
    sizing_variables,
)
from deployments.config import load_app_config

_HEADER = """\
# Generated from {config} by: python -m cluster tfvars <config> --cloud {cloud}
# Sizing only (the node pool and the Ray worker group follow from these). Do not hand-edit:
# change the Serve config and regenerate.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tfvars",
        help="derive a Terraform example's sizing variables from a Serve config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="Serve config file, e.g. configs/kimi.yaml")
    parser.add_argument("--cloud", required=True, choices=typing.get_args(Cloud))
    parser.add_argument(
        "--model", help="the model to size, by name (default: the config's only GPU model)"
    )
    parser.add_argument(
        "--application", help="the Serve application holding it (default: the first)"
    )
    parser.add_argument(
        "--min-replicas",
        type=int,
        help="fewest replicas, unless the config sets num_replicas (default 1)",
    )
    parser.add_argument(
        "--max-replicas",
        type=int,
        help="most replicas, unless the config sets num_replicas (default 2)",
    )
    parser.add_argument(
        "--machine-type", help="another catalog machine type of that cloud and GPU"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of HCL")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        app = load_app_config(args.config, args.application)
        model = planned_model(app, args.model)
        variables = sizing_variables(
            model,
            args.cloud,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            machine_type=args.machine_type,
        )
    except (InfeasiblePlanError, TfvarsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (OSError, LookupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(format_json(variables))
    else:
        print(_HEADER.format(config=args.config, cloud=args.cloud))
        print(format_hcl(variables))
    return 0
