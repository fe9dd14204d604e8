#!/usr/bin/env python3
"""Checks, before the first job, that each region of a fleet file may run the fleet's GPU workers at all.

New accounts often have 0 vCPUs of G instances, on-demand and spot: every launch then fails with
VcpuLimitExceeded or MaxSpotInstanceCountExceeded, the executor blocks the quota bucket and alerts, and the
fleet never starts. This reads the two EC2 quotas that bound a G-instance fleet (Service Quotas L-DB2E81BA,
"Running On-Demand G and VT instances", and L-3819A6DF, "All G and VT Spot Instance Requests", both in vCPUs)
in every region of the fleet file, and compares them with what the fleet may need: `workers.max` of its
largest allowed instance type, for each capacity type the file allows.

    tools/deploy/check_quotas.py --fleet fleet.json

Prints one line per region and capacity type; exits 1 when a quota is below the need (with the link to raise
it) and 2 when a quota cannot be read (Service Quotas unreachable or not allowed).
"""

import argparse
import json
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError

QUOTAS = {
    "on_demand": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "spot": ("L-3819A6DF", "All G and VT Spot Instance Requests"),
}


def vcpus(session, region, types):
    try:
        answer = session.client("ec2", region_name=region).describe_instance_types(InstanceTypes=types)
    except (ClientError, BotoCoreError) as e:
        raise LookupError(f"{region}: instance types {types}: {e}") from e
    return {t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"] for t in answer["InstanceTypes"]}


def quota(session, region, code):
    try:
        answer = session.client("service-quotas", region_name=region).get_service_quota(
            ServiceCode="ec2", QuotaCode=code
        )
    except (ClientError, BotoCoreError) as e:
        raise LookupError(f"{region}: quota {code}: {e}") from e
    return answer["Quota"]["Value"]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleet", required=True, help="the fleet file (tools/deploy/fleet_config.py writes it)")
    parser.add_argument("--profile", help="the AWS profile to act as")
    args = parser.parse_args(argv)

    with open(args.fleet) as f:
        fleet = json.load(f)
    session = boto3.session.Session(profile_name=args.profile)
    types = [t["name"] for t in fleet["instance_types"]]
    workers = fleet["workers"]["max"]
    short, unknown = [], []
    for stamp in fleet["regions"]:
        region = stamp["region"]
        try:
            per_type = vcpus(session, region, types)
        except LookupError as e:
            unknown.append(str(e))
            continue
        need = workers * max(per_type.values())
        for capacity_type in fleet["capacity_types"]:
            code, name = QUOTAS[capacity_type]
            try:
                value = quota(session, region, code)
            except LookupError as e:
                unknown.append(str(e))
                continue
            verdict = "ok" if value >= need else "TOO LOW"
            print(f"{region} {capacity_type}: {name} ({code}) {value:g} vCPUs, the fleet may need {need}: {verdict}")
            if value < need:
                short.append(
                    f"raise {code} in {region} to {need}: "
                    f"https://{region}.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/{code}"
                )
    for line in unknown:
        print(f"check_quotas: unknown: {line}", file=sys.stderr)
    for line in short:
        print(f"check_quotas: {line}", file=sys.stderr)
    if short:
        return 1
    return 2 if unknown else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
