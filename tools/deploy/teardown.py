#!/usr/bin/env python3
"""Removes a gameforge deployment from every region: what CloudFormation cannot delete by itself first.

The executor launches workers with EC2 Fleet, outside the stacks: they would keep running (and keep the
subnets' network interfaces) after the stacks are gone. The model and output buckets must be empty before
CloudFormation can delete them. So, in each region, standbys first and home last (the standbys forward events to
home's bus): scale the ECS service to zero, terminate the fleet's instances (tag `gameforge:fleet`), empty the
stack's buckets, delete the stack and wait for it.

    tools/deploy/teardown.py --stack gameforge --home us-east-1 --standby us-west-2 --yes

Without --yes it only prints what it would do. Exit status 1 when a step failed (the rest is still attempted).
"""

import argparse
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError


def stack_outputs(cloudformation, stack):
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as e:
        if "does not exist" in str(e):
            return None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def buckets_of(outputs):
    found = []
    if "OutputBucketName" in outputs:
        found.append(outputs["OutputBucketName"])
    if outputs.get("ModelLocation", "").startswith("s3://"):
        found.append(outputs["ModelLocation"][len("s3://") :].split("/")[0])
    return found


def empty_bucket(s3, bucket):
    paginator = s3.get_paginator("list_object_versions")
    removed = 0
    for page in paginator.paginate(Bucket=bucket):
        batch = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if batch:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            removed += len(batch)
    return removed


def fleet_instances(ec2, fleet):
    ids = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag:gameforge:fleet", "Values": [fleet]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )
    for page in pages:
        for reservation in page["Reservations"]:
            ids.extend(i["InstanceId"] for i in reservation["Instances"])
    return ids


def teardown(session, region, stack, fleet, act, say):
    cloudformation = session.client("cloudformation", region_name=region)
    outputs = stack_outputs(cloudformation, stack)
    if outputs is None:
        say(f"{region}: no stack {stack}")
        return
    if "EcsClusterName" in outputs and "EcsServiceName" in outputs:
        say(f"{region}: scale {outputs['EcsServiceName']} to 0")
        if act:
            session.client("ecs", region_name=region).update_service(
                cluster=outputs["EcsClusterName"], service=outputs["EcsServiceName"], desiredCount=0
            )
    ec2 = session.client("ec2", region_name=region)
    instances = fleet_instances(ec2, fleet)
    say(f"{region}: terminate {len(instances)} instance(s) of fleet {fleet} {' '.join(instances)}".rstrip())
    if act and instances:
        ec2.terminate_instances(InstanceIds=instances)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=instances)
    s3 = session.client("s3", region_name=region)
    for bucket in buckets_of(outputs):
        say(f"{region}: empty s3://{bucket}")
        if act:
            try:
                removed = empty_bucket(s3, bucket)
                say(f"{region}: removed {removed} object version(s) from s3://{bucket}")
            except ClientError as e:
                if "NoSuchBucket" not in str(e):
                    raise
    say(f"{region}: delete stack {stack}")
    if act:
        cloudformation.delete_stack(StackName=stack)
        cloudformation.get_waiter("stack_delete_complete").wait(StackName=stack)
        say(f"{region}: stack {stack} deleted")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="gameforge")
    parser.add_argument("--home", required=True)
    parser.add_argument("--standby", action="append", default=[])
    parser.add_argument("--fleet", default="sdxl", help="the fleet's name (the stack's FleetName)")
    parser.add_argument("--profile")
    parser.add_argument("--yes", action="store_true", help="do it; otherwise only say what would be done")
    args = parser.parse_args(argv)

    session = boto3.session.Session(profile_name=args.profile)
    failed = False
    prefix = "" if args.yes else "(dry run) "
    for region in [*args.standby, args.home]:
        try:
            teardown(session, region, args.stack, args.fleet, args.yes, lambda line: print(prefix + line))
        except (ClientError, BotoCoreError, WaiterError) as e:
            print(f"teardown: {region}: {e}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
