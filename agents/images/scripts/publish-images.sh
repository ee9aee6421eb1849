#!/usr/bin/env bash
# Publishes Outpost's images to an environment's ECR repositories (docs/images.md).
#
#   agents/images/scripts/publish-images.sh ENV [NAME...]      ENV: dev | staging | prod (cdk.json)
#
# Pushes outpost/<name>:<TAG> (built by agents/images/scripts/build-images.sh) as
# <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<TAG>. TAG is the commit's short SHA;
# a tag is written once and never moved (prod's repositories refuse to overwrite a tag, and
# the other environments are treated the same), so an image that is already there is skipped
# and a "-dirty" build is refused. The task definitions pick the tag at deploy time:
#   make deploy ENV=ENV IMAGE_TAG=<TAG>
#
# The repositories carry CloudFormation-generated names: they are read from the environment's
# registry stack (<Env>-Registry), whose ECR repositories' logical IDs start with
# Repositories<Image> (constructs/image_repositories.py). REPOSITORY_URI_<NAME> (upper case,
# "-" as "_") overrides one.
#
# Environment: TAG, ENGINE (docker|buildah, as build-images.sh picks it), AWS_REGION (default:
# the environment's region in cdk.json), REGISTRY_STACK (default <Env>-Registry),
# DRY_RUN=1 (print the pushes, push nothing).
set -euo pipefail

cd "$(dirname "$0")/../../.."

ALL_IMAGES=(base claude codex gemini aider grok control-plane)

log() { echo "publish-images: $*" >&2; }
die() {
    log "$*"
    exit 1
}

[ "$#" -ge 1 ] || die "usage: agents/images/scripts/publish-images.sh ENV [NAME...]"
ENV_NAME=$1
shift
images=("$@")
[ "${#images[@]}" -gt 0 ] || images=("${ALL_IMAGES[@]}")
for name in "${images[@]}"; do
    [[ " ${ALL_IMAGES[*]} " == *" $name "* ]] || die "unknown image '$name' (known: ${ALL_IMAGES[*]})"
done

command -v aws >/dev/null 2>&1 || die "the AWS CLI (aws) is needed"

# Region and account as cdk.json declares them for the environment.
read -r cfg_region cfg_account < <(python3 - "$ENV_NAME" <<'EOF'
import json, sys
envs = json.load(open("cdk.json"))["context"]["outpost:environments"]
if sys.argv[1] not in envs:
    sys.exit(f"unknown environment {sys.argv[1]!r}; cdk.json has {', '.join(envs)}")
env = envs[sys.argv[1]]
print(env["region"], env.get("account") or "-")
EOF
) || die "cannot read environment '$ENV_NAME' from cdk.json"
REGION="${AWS_REGION:-$cfg_region}"
STACK="${REGISTRY_STACK:-${ENV_NAME^}-Registry}"

if [ -z "${TAG:-}" ]; then
    TAG=$(git rev-parse --short=12 HEAD)
    git diff --quiet HEAD -- || TAG="$TAG-dirty"
fi
[[ "$TAG" != *-dirty ]] || die "refusing to publish '$TAG': commit first (tags are immutable)"
[[ "$TAG" != latest ]] || die "refusing to publish 'latest': tags are commit SHAs"

if [ -z "${ENGINE:-}" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=buildah; fi
fi
if [ "$ENGINE" = buildah ]; then
    BUILDAH_STORAGE="${BUILDAH_STORAGE:-$(agents/images/scripts/buildah-storage.sh)}"
fi
engine() {
    if [ "$ENGINE" = buildah ]; then buildah --storage-driver "$BUILDAH_STORAGE" "$@"; else docker "$@"; fi
}
local_ref() {
    if [ "$ENGINE" = buildah ]; then echo "localhost/outpost/$1:$TAG"; else echo "outpost/$1:$TAG"; fi
}
have_local() {
    if [ "$ENGINE" = buildah ]; then
        engine inspect --type image "$1" >/dev/null 2>&1
    else
        docker image inspect "$1" >/dev/null 2>&1
    fi
}

ACCOUNT=$(aws sts get-caller-identity --query Account --output text)
if [ "$cfg_account" != - ] && [ "$cfg_account" != "$ACCOUNT" ]; then
    die "credentials are for account $ACCOUNT, but cdk.json puts '$ENV_NAME' in $cfg_account"
fi
REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"

# image name -> repository name, from the registry stack.
declare -A repository=()
while read -r logical physical; do
    [ -n "$logical" ] || continue
    for name in "${ALL_IMAGES[@]}"; do
        camel=$(sed -E 's/(^|-)([a-z])/\U\2/g' <<<"$name")
        if [[ "$logical" =~ ^Repositories${camel}[0-9A-F]{8}$ ]]; then
            repository[$name]=$physical
        fi
    done
done < <(aws cloudformation describe-stack-resources --region "$REGION" --stack-name "$STACK" \
    --query "StackResources[?ResourceType=='AWS::ECR::Repository'].[LogicalResourceId,PhysicalResourceId]" \
    --output text)

plan=()
for name in "${images[@]}"; do
    override="REPOSITORY_URI_$(tr 'a-z-' 'A-Z_' <<<"$name")"
    if [ -n "${!override:-}" ]; then
        uri=${!override}
    elif [ -n "${repository[$name]:-}" ]; then
        uri="$REGISTRY/${repository[$name]}"
    else
        die "stack $STACK in $REGION has no repository for '$name'; deploy it first (docs/images.md)"
    fi
    have_local "$(local_ref "$name")" || die "no local image $(local_ref "$name"); run: TAG=$TAG make images"
    plan+=("$name=$uri")
done

if [ "${DRY_RUN:-0}" != 1 ]; then
    aws ecr get-login-password --region "$REGION" | engine login --username AWS --password-stdin "$REGISTRY"
fi

for entry in "${plan[@]}"; do
    name=${entry%%=*}
    uri=${entry#*=}
    repo_name=${uri#*/}
    if aws ecr describe-images --region "$REGION" --repository-name "$repo_name" \
        --image-ids "imageTag=$TAG" >/dev/null 2>&1; then
        log "$name: $uri:$TAG is already published; skipped"
        continue
    fi
    if [ "${DRY_RUN:-0}" = 1 ]; then
        echo "would push $(local_ref "$name") -> $uri:$TAG"
        continue
    fi
    log "$name: pushing $uri:$TAG"
    if [ "$ENGINE" = buildah ]; then
        engine push --quiet --format v2s2 "$(local_ref "$name")" "docker://$uri:$TAG"
    else
        docker tag "$(local_ref "$name")" "$uri:$TAG"
        docker push --quiet "$uri:$TAG"
    fi
done

echo "published $TAG to $ENV_NAME ($REGISTRY)"
echo "deploy with: make deploy ENV=$ENV_NAME IMAGE_TAG=$TAG"
