#!/usr/bin/env python3
"""Writes the executor's fleet file from the deployed stacks, so that no stamp is copied by hand.

Each region's stack (home and standbys) describes its worker stamp in its outputs: EcsClusterName,
EcsServiceName, TaskDefinitionFamily, LaunchTemplateName, WorkerSubnetIds, ModelLocation. The zone of each
subnet comes from EC2. Everything else (instance types, capacity types, guardrails, scaling, ledger, migration,
retry) comes from a base fleet file, infra/fleet.json by default.

    tools/deploy/fleet_config.py --stack gameforge --home us-east-1 --standby us-west-2 --standby us-east-2 \
        > fleet.json

Credentials, endpoint and profile are boto3's (AWS_PROFILE, AWS_ENDPOINT_URL...). Exit status 1 with one line
per problem when a stack, an output or a subnet is missing.
"""

import argparse
import json
import sys
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parents[2]
STAMP_OUTPUTS = {
    "ecs_cluster": "EcsClusterName",
    "ecs_service": "EcsServiceName",
    "task_definition": "TaskDefinitionFamily",
    "launch_template": "LaunchTemplateName",
    "model_location": "ModelLocation",
}


class Problem(Exception):
    pass


def outputs(session, region, stack):
    try:
        answer = session.client("cloudformation", region_name=region).describe_stacks(StackName=stack)
    except (ClientError, BotoCoreError) as e:
        raise Problem(f"{region}: stack {stack}: {e}") from e
    stacks = answer.get("Stacks", [])
    if not stacks:
        raise Problem(f"{region}: stack {stack} does not exist")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def stamp(session, region, stack):
    found = outputs(session, region, stack)
    missing = [key for key in [*STAMP_OUTPUTS.values(), "WorkerSubnetIds"] if key not in found]
    if missing:
        raise Problem(f"{region}: stack {stack} lacks the outputs {', '.join(missing)}")
    subnet_ids = [s for s in found["WorkerSubnetIds"].split(",") if s]
    try:
        described = session.client("ec2", region_name=region).describe_subnets(SubnetIds=subnet_ids)["Subnets"]
    except (ClientError, BotoCoreError) as e:
        raise Problem(f"{region}: subnets {subnet_ids}: {e}") from e
    subnets = {}
    for subnet in described:
        zone = subnet["AvailabilityZone"]
        # One subnet per zone is what the executor launches into; a second would be ambiguous.
        if zone in subnets:
            raise Problem(f"{region}: two worker subnets in {zone} ({subnets[zone]}, {subnet['SubnetId']})")
        subnets[zone] = subnet["SubnetId"]
    entry = {"region": region}
    entry.update({field: found[key] for field, key in STAMP_OUTPUTS.items()})
    entry["subnets"] = dict(sorted(subnets.items()))
    return entry, found


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="gameforge", help="the stacks' name in every region (default: gameforge)")
    parser.add_argument("--home", required=True, help="the home region")
    parser.add_argument("--standby", action="append", default=[], help="a standby region, in fallback order")
    parser.add_argument("--base", default=str(ROOT / "infra/fleet.json"), help="the fleet file to start from")
    parser.add_argument("--profile", help="the AWS profile to act as")
    args = parser.parse_args(argv)

    base = json.loads(Path(args.base).read_text())
    session = boto3.session.Session(profile_name=args.profile)
    problems = []
    regions = []
    fleet_name = None
    for region in [args.home, *args.standby]:
        try:
            entry, found = stamp(session, region, args.stack)
        except Problem as e:
            problems.append(str(e))
            continue
        regions.append(entry)
        if region == args.home:
            fleet_name = found.get("FleetName")
    if problems:
        for problem in problems:
            print(f"fleet_config: {problem}", file=sys.stderr)
        return 1
    base["home_region"] = args.home
    base["regions"] = regions
    if fleet_name:
        base["fleet"] = fleet_name
    json.dump(base, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
