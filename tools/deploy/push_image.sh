#!/usr/bin/env bash
# Builds the worker image and pushes it to an ECR repository in each region the fleet may run in (ECS pulls from
# the task's own region), then prints the image URI to pass as the stacks' WorkerImage parameter.
#
#   tools/deploy/push_image.sh us-east-1 us-west-2            # A10G build (g5), tag = the commit
#   CUDA_COMPUTE_CAP=75 TAG=t4 tools/deploy/push_image.sh us-east-1
#
# Needs docker (with buildx) and the aws CLI, signed in as someone who may create ECR repositories and push.
# Not run by the tests: this machine has no Docker engine and no AWS account.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 REGION [REGION...]" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
repository="${REPOSITORY:-gameforge-worker}"
tag="${TAG:-$(git -C "$root" rev-parse --short HEAD)}"
account="$(aws sts get-caller-identity --query Account --output text)"

docker build -f "$root/worker/Dockerfile" --build-arg "CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-86}" \
  -t "$repository:$tag" "$root"
for region in "$@"; do
  registry="$account.dkr.ecr.$region.amazonaws.com"
  aws ecr describe-repositories --region "$region" --repository-names "$repository" >/dev/null 2>&1 \
    || aws ecr create-repository --region "$region" --repository-name "$repository" \
         --image-scanning-configuration scanOnPush=true --image-tag-mutability IMMUTABLE >/dev/null
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
  docker tag "$repository:$tag" "$registry/$repository:$tag"
  docker push "$registry/$repository:$tag"
  echo "WorkerImage for $region: $registry/$repository:$tag"
done
