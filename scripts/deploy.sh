#!/usr/bin/env bash
# Deploys smtp-gateway to one of its EKS clusters, from this work tree: the cluster (if missing), the AWS
# Load Balancer Controller, the image in ECR tagged with the git revision, the Helm release, its tests.
# Also runs a gradual rollout: a canary release beside the stable one, behind the same Services.
# deploy-aws-staging.sh and deploy-aws-production.sh are the front doors; this is the one implementation.
set -euo pipefail

PROG=$(basename "$0")
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$ROOT/scripts/lib/common.sh"

# Pinned so two deploys of the same revision install the same controller (chart 1.14.0 = app v2.14.0).
LBC_CHART_VERSION=${LBC_CHART_VERSION:-1.14.0}
LBC_CHART_REPO=https://aws.github.io/eks-charts
HELM_TIMEOUT=${HELM_TIMEOUT:-10m}
# The values that turn a release of the chart into a canary of the stable release: pods carry the stable
# release's Service selector labels (so its Services send them traffic) and the chart renders no
# Services, HPA, PDB or ServiceMonitor of its own.
CANARY_VALUES=(--set canary.enabled=true --set "canary.stableRelease=$RELEASE")

usage() {
  cat <<USAGE
Usage: $PROG ENVIRONMENT [COMMAND] [OPTIONS]

ENVIRONMENT   staging (cluster smtp-gateway-staging) or production (cluster smtp-gateway-prod)

COMMAND
  deploy          (default) In order: check the tools and the AWS identity; create the cluster from
                  eksctl/<env>.yaml if it does not exist; install or upgrade the AWS Load Balancer
                  Controller; create the ECR repository if missing and log in; build and push the image
                  tagged with the git revision; helm upgrade --install --atomic --wait with
                  values/<env>.yaml and that tag; helm test; put the CloudWatch dashboard
                  (deploy/cloudwatch-dashboard.json, where the cluster runs Container Insights);
                  print the load balancers' host names.
  rollout PERCENT Gradual rollout of this revision: install or resize the canary release
                  ($CANARY_RELEASE) beside the stable one, behind the same Services, with replicas
                  chosen so it gets about PERCENT% of the pods (10, then 50; 100 means promote).
  promote         Move the stable release to the canary's image, run helm test, remove the canary.
  abort           Remove the canary release; the stable release takes all traffic again.
  kubeconfig      Point kubectl at the environment's cluster (aws eks update-kubeconfig).

OPTIONS
  --dry-run       Print each command instead of running it (read-only look-ups too); changes nothing.
  --yes, -y       Do not ask for confirmation (production asks before changing anything).
  --canary-replicas N   With rollout: run N canary pods instead of the computed number.
  -h, --help      Show this help.

Production refuses a work tree with uncommitted changes. A staging image from a dirty tree is tagged
<revision>-dirty-<UTC time>. Needs: aws, eksctl, kubectl, helm, docker, git; AWS credentials (AWS_PROFILE
or the usual AWS_* variables). Optional: LBC_CHART_VERSION (default $LBC_CHART_VERSION), HELM_TIMEOUT
(default $HELM_TIMEOUT).
USAGE
}

parse_args() {
  COMMAND=deploy PERCENT="" CANARY_REPLICAS=""
  local positional=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=true ;;
      -y | --yes) ASSUME_YES=true ;;
      --canary-replicas)
        [ $# -ge 2 ] || die "--canary-replicas needs a number"
        CANARY_REPLICAS=$2
        shift
        ;;
      -*) die "unknown option '$1' (try --help)" ;;
      *) positional+=("$1") ;;
    esac
    shift
  done
  [ "${#positional[@]}" -ge 1 ] || die "missing ENVIRONMENT: staging or production (try --help)"
  select_env "${positional[0]}"
  [ "${#positional[@]}" -ge 2 ] && COMMAND=${positional[1]}
  case "$COMMAND" in
    deploy | promote | abort | kubeconfig) [ "${#positional[@]}" -le 2 ] || die "unexpected argument '${positional[2]}'" ;;
    rollout)
      [ "${#positional[@]}" -eq 3 ] || die "rollout needs PERCENT, e.g. '$PROG ${positional[0]} rollout 10'"
      PERCENT=${positional[2]}
      if ! [[ "$PERCENT" =~ ^[0-9]+$ ]] || [ "$PERCENT" -lt 1 ] || [ "$PERCENT" -gt 100 ]; then
        die "rollout PERCENT must be a whole number from 1 to 100, got '$PERCENT'"
      fi
      ;;
    *) die "unknown command '$COMMAND': expected deploy, rollout, promote, abort or kubeconfig" ;;
  esac
  if [ -n "$CANARY_REPLICAS" ]; then
    [[ "$CANARY_REPLICAS" =~ ^[1-9][0-9]*$ ]] || die "--canary-replicas must be a whole number of at least 1, got '$CANARY_REPLICAS'"
  fi
}

# Staging is for trying things: only production stops to ask.
confirm_production() {
  [ "$ENV_NAME" = production ] || return 0
  confirm "$1"
}

# Steps, in the order deploy runs them ------------------------------------------------------------------

preflight() {
  require_tools aws eksctl kubectl helm docker git
  if [ "$ENV_NAME" = production ] && [ "$COMMAND" != abort ] && [ "$COMMAND" != kubeconfig ]; then
    refuse_dirty_tree
  fi
  ACCOUNT=$(aws_account)
  REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"
  IMAGE="$REGISTRY/$ECR_REPOSITORY"
  say "$ENV_NAME: cluster $CLUSTER in $REGION, AWS account $ACCOUNT"
}

# The cluster exists (ACTIVE), does not exist (create it), or is in a state we must not touch.
ensure_cluster() {
  local create_allowed=$1
  if probe aws eks describe-cluster --name "$CLUSTER" --region "$REGION" --query cluster.status --output text; then
    [ "$PROBE_OUT" = ACTIVE ] || die "cluster $CLUSTER is $PROBE_OUT, not ACTIVE; wait for it and run again"
    say "cluster $CLUSTER exists"
  elif [[ "$PROBE_OUT" == *ResourceNotFoundException* ]] || $DRY_RUN; then
    $create_allowed || die "cluster $CLUSTER does not exist; run '$PROG $ENV_NAME deploy' first"
    require_file "$EKSCTL_FILE" "the cluster definition is part of this repository"
    say "creating cluster $CLUSTER (15-20 minutes)"
    run eksctl create cluster --config-file "$ROOT/$EKSCTL_FILE"
  else
    die "could not look up cluster $CLUSTER: $PROBE_OUT"
  fi
  update_kubeconfig
}

install_load_balancer_controller() {
  local vpc
  vpc=$(query VPC_ID aws eks describe-cluster --name "$CLUSTER" --region "$REGION" \
    --query cluster.resourcesVpcConfig.vpcId --output text)
  say "AWS Load Balancer Controller $LBC_CHART_VERSION"
  # The IAM role comes from the Pod Identity association in the eksctl file, bound to this service account.
  run helm upgrade --install "$LBC_RELEASE" aws-load-balancer-controller \
    --repo "$LBC_CHART_REPO" --version "$LBC_CHART_VERSION" \
    --kube-context "$CLUSTER" --namespace kube-system \
    --set "clusterName=$CLUSTER" --set "region=$REGION" --set "vpcId=$vpc" \
    --set serviceAccount.create=true --set "serviceAccount.name=$LBC_RELEASE" \
    --wait --timeout "$HELM_TIMEOUT"
}

ensure_ecr_repository() {
  if probe aws ecr describe-repositories --repository-names "$ECR_REPOSITORY" --region "$REGION"; then
    say "ECR repository $ECR_REPOSITORY exists"
  elif [[ "$PROBE_OUT" == *RepositoryNotFoundException* ]] || $DRY_RUN; then
    # Immutable tags: a revision's tag always means the same image, so a rollback is exact.
    run aws ecr create-repository --repository-name "$ECR_REPOSITORY" --region "$REGION" \
      --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true \
      --encryption-configuration encryptionType=AES256
  else
    die "could not look up ECR repository $ECR_REPOSITORY: $PROBE_OUT"
  fi
  if $DRY_RUN; then
    echo "$(quote aws ecr get-login-password --region "$REGION") | $(quote docker login --username AWS --password-stdin "$REGISTRY")"
    return
  fi
  echo "+ aws ecr get-login-password --region $REGION | docker login --username AWS --password-stdin $REGISTRY" >&2
  aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$REGISTRY" >&2 ||
    die "step failed: could not log docker in to $REGISTRY"
}

# The tag is the git revision, so the image in a release says which commit it runs.
image_tag() {
  local revision
  revision=$(git -C "$ROOT" rev-parse --short=12 HEAD) || die "cannot read the git revision of $ROOT"
  if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
    revision+="-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
  echo "$revision"
}

build_and_push_image() {
  TAG=$(image_tag)
  if probe aws ecr describe-images --repository-name "$ECR_REPOSITORY" --region "$REGION" --image-ids "imageTag=$TAG"; then
    say "image $IMAGE:$TAG is already in ECR; not rebuilding"
    return
  fi
  local version source
  version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$ROOT/package.json")
  # The OCI source label is a URL: git@host:org/repo.git becomes https://host/org/repo.
  source=$(git -C "$ROOT" remote get-url origin 2>/dev/null | sed -E 's#^git@([^:]+):#https://\1/#; s#\.git$##' || true)
  say "building $IMAGE:$TAG"
  # linux/amd64: the node groups are t3 instances, whatever machine builds the image.
  run docker build --file "$ROOT/gateway/Dockerfile" --platform linux/amd64 \
    --build-arg "VERSION=$version" --build-arg "REVISION=$(git -C "$ROOT" rev-parse HEAD)" \
    --build-arg "SOURCE=${source:-unknown}" --tag "$IMAGE:$TAG" "$ROOT"
  run docker push "$IMAGE:$TAG"
}

# The Secrets the overlay names (secret.existingSecret, tls.existingSecret) hold the SES credentials and
# the certificate, which no script may invent. Without them the pods never start and --atomic only gives
# up after $HELM_TIMEOUT, so look first and say which one is missing.
require_secrets() {
  local names name
  mapfile -t names < <(sed -n -E 's/^  existingSecret: *"?([^"#[:space:]]+)"?.*$/\1/p' "$ROOT/$VALUES_FILE")
  for name in "${names[@]}"; do
    if probe kubectl --context "$CLUSTER" --namespace "$NAMESPACE" get secret "$name" --output name; then
      continue
    elif [[ "$PROBE_OUT" == *NotFound* ]]; then
      die "Secret $name, named by $VALUES_FILE, does not exist in namespace $NAMESPACE of $CLUSTER; create it first (see the comment at the top of $VALUES_FILE), then run again"
    elif ! $DRY_RUN; then
      die "could not look up Secret $name in namespace $NAMESPACE: $PROBE_OUT"
    fi
  done
}

# helm_release RELEASE REPOSITORY TAG EXTRA_ARGS...: install or upgrade one release of the chart with the
# environment's overlay; --atomic rolls it back by itself if it does not become ready.
helm_release() {
  local release=$1 repository=$2 tag=$3
  shift 3
  require_file "$CHART_DIR/Chart.yaml" "run 'make synth' to generate the chart"
  require_file "$VALUES_FILE" "the $ENV_NAME overlay is part of this repository"
  require_secrets
  run helm upgrade --install "$release" "$ROOT/$CHART_DIR" \
    --kube-context "$CLUSTER" --namespace "$NAMESPACE" --create-namespace \
    --values "$ROOT/$VALUES_FILE" \
    --set "image.repository=$repository" --set "image.tag=$tag" \
    "$@" --atomic --wait --timeout "$HELM_TIMEOUT"
}

helm_test() {
  run helm test "$RELEASE" --kube-context "$CLUSTER" --namespace "$NAMESPACE" --logs --timeout 5m
}

# The CloudWatch dashboard of an environment whose cluster runs Container Insights (the
# amazon-cloudwatch-observability add-on in its eksctl file): put on every deploy, so the committed JSON
# is what the console shows.
put_cloudwatch_dashboard() {
  runs_container_insights || return 0
  require_file "$CLOUDWATCH_DASHBOARD" "the dashboard is part of this repository"
  say "CloudWatch dashboard $CLUSTER"
  run aws cloudwatch put-dashboard --dashboard-name "$CLUSTER" \
    --dashboard-body "file://$ROOT/$CLOUDWATCH_DASHBOARD" --region "$REGION" --output text
}

print_load_balancers() {
  say "load balancers (DNS names can take a few minutes to resolve):"
  run kubectl --context "$CLUSTER" --namespace "$NAMESPACE" get services \
    --selector "app.kubernetes.io/instance=$RELEASE" \
    --output 'jsonpath={range .items[?(@.spec.type=="LoadBalancer")]}{.metadata.name}{"\t"}{.status.loadBalancer.ingress[*].hostname}{"\n"}{end}'
}

# Rollout -------------------------------------------------------------------------------------------------

# canary_replicas STABLE PERCENT: the fewest canary pods (at least 1) that put the canary's share of all
# pods as close as replica counts allow to PERCENT, with the stable release left as it is.
canary_replicas() {
  local stable=$1 percent=$2
  local n=$(((stable * percent + (100 - percent) / 2) / (100 - percent)))
  [ "$n" -ge 1 ] || n=1
  echo "$n"
}

stable_replicas() {
  local replicas
  replicas=$(query 2 kubectl --context "$CLUSTER" --namespace "$NAMESPACE" get deployments \
    --selector "app.kubernetes.io/instance=$RELEASE" --output 'jsonpath={.items[0].spec.replicas}')
  [[ "$replicas" =~ ^[1-9][0-9]*$ ]] ||
    die "the stable release $RELEASE has no running Deployment in $NAMESPACE (replicas '$replicas'); run '$PROG $ENV_NAME deploy' first"
  echo "$replicas"
}

rollout() {
  if [ "$PERCENT" -eq 100 ]; then
    promote
    return
  fi
  confirm_production "run this revision as a $PERCENT% canary in $ENV_NAME ($CLUSTER)"
  ensure_cluster false
  ensure_ecr_repository
  build_and_push_image
  local stable canary
  stable=$(stable_replicas)
  canary=${CANARY_REPLICAS:-$(canary_replicas "$stable" "$PERCENT")}
  say "canary $IMAGE:$TAG with $canary pod(s) beside $stable stable pod(s)"
  helm_release "$CANARY_RELEASE" "$IMAGE" "$TAG" "${CANARY_VALUES[@]}" \
    --set autoscaling.enabled=false --set "replicaCount=$canary"
  say "canary share: $canary of $((stable + canary)) pods ($((100 * canary / (stable + canary)))%, asked $PERCENT%)." \
    "Watch it, then: $PROG $ENV_NAME rollout 50 | promote | abort"
}

promote() {
  confirm_production "promote the canary to the stable release in $ENV_NAME ($CLUSTER)"
  ensure_cluster false
  local image
  image=$(query "$IMAGE:CANARY_TAG" kubectl --context "$CLUSTER" --namespace "$NAMESPACE" get deployments \
    --selector "app.kubernetes.io/instance=$CANARY_RELEASE" \
    --output 'jsonpath={.items[0].spec.template.spec.containers[0].image}')
  [[ "$image" == *:* ]] || die "no canary release $CANARY_RELEASE is running in $NAMESPACE; start one with '$PROG $ENV_NAME rollout 10'"
  say "promoting $image to $RELEASE"
  helm_release "$RELEASE" "${image%:*}" "${image##*:}"
  helm_test
  run helm uninstall "$CANARY_RELEASE" --kube-context "$CLUSTER" --namespace "$NAMESPACE" --wait
  print_load_balancers
}

abort() {
  ensure_cluster false
  say "removing the canary; $RELEASE takes all traffic"
  run helm uninstall "$CANARY_RELEASE" --kube-context "$CLUSTER" --namespace "$NAMESPACE" --ignore-not-found --wait
}

deploy() {
  confirm_production "deploy this revision to $ENV_NAME ($CLUSTER, account $ACCOUNT)"
  ensure_cluster true
  install_load_balancer_controller
  ensure_ecr_repository
  build_and_push_image
  say "releasing $IMAGE:$TAG as $RELEASE"
  helm_release "$RELEASE" "$IMAGE" "$TAG"
  helm_test
  put_cloudwatch_dashboard
  print_load_balancers
}

main() {
  parse_args "$@"
  cd "$ROOT"
  if [ "$COMMAND" = kubeconfig ]; then
    require_tools aws
    update_kubeconfig
    return
  fi
  preflight
  case "$COMMAND" in
    deploy) deploy ;;
    rollout) rollout ;;
    promote) promote ;;
    abort) abort ;;
  esac
}

main "$@"
