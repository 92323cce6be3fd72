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
# The canary gates (see usage): defaults, each overridable from the environment or an option.
CANARY_MAX_RATIO_INCREASE=${CANARY_MAX_RATIO_INCREASE:-1}
CANARY_MIN_MESSAGES=${CANARY_MIN_MESSAGES:-100}
CANARY_MIN_SOAK_ROLLOUT=${CANARY_MIN_SOAK_ROLLOUT:-1h}
CANARY_MIN_SOAK_PROMOTE=${CANARY_MIN_SOAK_PROMOTE:-24h}
# A new canary starts at most this share: a larger step only grows a running canary, past its gates.
CANARY_START_MAX_PERCENT=10
# Where the canary's Deployment records its current step, for the soak time.
STEP_ANNOTATION=smtp-gateway/rollout-step
STEP_STARTED_ANNOTATION=smtp-gateway/rollout-step-started
# The values that turn a release of the chart into a canary of the stable release: its pods carry the
# stable release's name in the label its Services select (so they send them traffic) and their own
# instance (so the stable HPA and PDB do not count them); the chart renders no Services, HPA, PDB or
# ServiceMonitor of its own.
CANARY_VALUES=(--set canary.enabled=true --set "canary.stableRelease=$RELEASE")

usage() {
  cat <<USAGE
Usage: $PROG ENVIRONMENT [COMMAND] [OPTIONS]

ENVIRONMENT   staging (cluster smtp-gateway-staging) or production (cluster smtp-gateway-prod)

COMMAND
  deploy          (default) In order: check the tools and the AWS identity; create the cluster from
                  eksctl/<env>.yaml if it does not exist; install or upgrade the AWS Load Balancer
                  Controller and check it is ready (Available, webhook endpoints); create the ECR
                  repository if missing and log in; build and push the image
                  tagged with the git revision; helm upgrade --install --rollback-on-failure --wait with
                  values/<env>.yaml and that tag; helm test; put the CloudWatch dashboard
                  (deploy/cloudwatch-dashboard.json, where the cluster runs Container Insights);
                  print the load balancers' host names.
  rollout PERCENT Gradual rollout of this revision: install or resize the canary release
                  ($CANARY_RELEASE) beside the stable one, behind the same Services, with replicas
                  chosen so it gets about PERCENT% of the pods (10, then 50; 100 means promote).
                  A new canary starts at $CANARY_START_MAX_PERCENT% or less; growing a running one passes the canary gates first.
  promote         Pass the canary gates, check the AWS Load Balancer Controller, move the stable
                  release to the canary's image, run helm test, remove the canary.
  abort           Remove the canary release; the stable release takes all traffic again.
  kubeconfig      Point kubectl at the environment's cluster (aws eks update-kubeconfig).

OPTIONS
  --dry-run       Print each command that would change something instead of running it; changes
                  nothing. The read-only look-ups of the canary gates do run, so it shows their decision.
  --yes, -y       Do not ask for confirmation (production asks before changing anything).
  --canary-replicas N   With rollout: run N canary pods instead of the computed number.
  --values FILE   Another values file over values/<env>.yaml for every release this run installs or
                  upgrades (repeatable; later files win), e.g. settings of one cluster.
  --max-ratio-increase POINTS   Canary gate: how many percentage points the canary's deferral or
                  refusal ratio may exceed the stable release's (default $CANARY_MAX_RATIO_INCREASE).
  --min-messages N      Canary gate: messages each release must have answered to be compared
                  (default $CANARY_MIN_MESSAGES).
  --min-soak DURATION   Canary gate: time the canary must have run at its current step (e.g. 90m, 1h,
                  0 for none); default $CANARY_MIN_SOAK_ROLLOUT before growing it, $CANARY_MIN_SOAK_PROMOTE before promote.
  --force         Go on although there was too little traffic to compare (the other gates still hold).
  -h, --help      Show this help.

Before each helm upgrade: the Secrets the overlay names must exist, and when the overlay sets
config.upstream.transport ses (SES v2 API with the pods' IAM role, no SMTP password Secret), the release's
ServiceAccount must have its EKS Pod Identity association (aws eks list-pod-identity-associations), the
SES identity named in eksctl/<env>.yaml must be verified (aws sesv2 get-email-identity) and the
configuration set must exist (aws sesv2 get-configuration-set).

CANARY GATES (before a rollout grows a running canary, and before promote)
  Soak time: each rollout step is recorded on the canary's Deployment (annotation
  $STEP_STARTED_ANNOTATION); the script refuses to go on before the minimum soak time at the
  current step has passed, and says how long to wait.
  Analysis: it reads /metrics of every running pod of both releases (through the API server's pod proxy,
  port $OPS_PORT), adds up smtp_gateway_messages_total by outcome and compares the share of answered
  messages each release deferred (4xx) and refused (5xx); it prints both and refuses when the canary's is
  higher by more than the margin, or when either release answered fewer than the minimum (unless --force).
  Counters run from each pod's start. The planned pace: rollout 10; rollout 50 after 1 h; promote after 24 h.

Production refuses a work tree with uncommitted changes. A staging image from a dirty tree is tagged
<revision>-dirty-<UTC time>. Needs: aws, eksctl, kubectl, helm, docker, git, awk; AWS credentials
(AWS_PROFILE or the usual AWS_* variables). Optional: LBC_CHART_VERSION (default $LBC_CHART_VERSION),
HELM_TIMEOUT (default $HELM_TIMEOUT), and the canary gates' defaults CANARY_MAX_RATIO_INCREASE,
CANARY_MIN_MESSAGES, CANARY_MIN_SOAK_ROLLOUT, CANARY_MIN_SOAK_PROMOTE.
USAGE
}

parse_args() {
  COMMAND=deploy PERCENT="" CANARY_REPLICAS="" MIN_SOAK="" FORCE=false EXTRA_VALUES=()
  local positional=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=true ;;
      -y | --yes) ASSUME_YES=true ;;
      --force) FORCE=true ;;
      --canary-replicas | --max-ratio-increase | --min-messages | --min-soak | --values)
        [ $# -ge 2 ] || die "$1 needs a value (try --help)"
        case "$1" in
          --canary-replicas) CANARY_REPLICAS=$2 ;;
          --max-ratio-increase) CANARY_MAX_RATIO_INCREASE=$2 ;;
          --min-messages) CANARY_MIN_MESSAGES=$2 ;;
          --min-soak) MIN_SOAK=$2 ;;
          --values)
            [ -f "$2" ] || die "--values: no such file '$2'"
            EXTRA_VALUES+=(--values "$(cd "$(dirname "$2")" && pwd)/$(basename "$2")")
            ;;
        esac
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
  [[ "$CANARY_MAX_RATIO_INCREASE" =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
    die "--max-ratio-increase (or CANARY_MAX_RATIO_INCREASE) must be a number of percentage points such as 1 or 0.5, got '$CANARY_MAX_RATIO_INCREASE'"
  [[ "$CANARY_MIN_MESSAGES" =~ ^[0-9]+$ ]] ||
    die "--min-messages (or CANARY_MIN_MESSAGES) must be a whole number, got '$CANARY_MIN_MESSAGES'"
  local name value
  for name in MIN_SOAK CANARY_MIN_SOAK_ROLLOUT CANARY_MIN_SOAK_PROMOTE; do
    value=${!name}
    [ -z "$value" ] || [[ "$value" =~ ^[0-9]+[smhd]?$ ]] ||
      die "$([ "$name" = MIN_SOAK ] && echo --min-soak || echo "$name") must be a duration such as 90m, 1h, 24h or 0, got '$value'"
  done
}

# seconds DURATION: 90m, 1h, 2d or plain seconds, as seconds (checked by parse_args).
seconds() {
  local number=${1%[smhd]}
  case "$1" in
    *m) echo $((number * 60)) ;;
    *h) echo $((number * 3600)) ;;
    *d) echo $((number * 86400)) ;;
    *) echo "$number" ;;
  esac
}

# duration SECONDS: as people read it, e.g. 1h05m.
duration() {
  local s=$1
  if [ "$s" -ge 3600 ]; then printf '%dh%02dm' $((s / 3600)) $((s % 3600 / 60))
  elif [ "$s" -ge 60 ]; then printf '%dm' $((s / 60))
  else printf '%ds' "$s"
  fi
}

# Staging is for trying things: only production stops to ask.
confirm_production() {
  [ "$ENV_NAME" = production ] || return 0
  confirm "$1"
}

# Steps, in the order deploy runs them ------------------------------------------------------------------

preflight() {
  require_tools aws eksctl kubectl helm docker git awk
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
  elif $DRY_RUN && ! $create_allowed; then
    : # a dry run of a step on a deployed cluster: its look-ups show whether it is there
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

# The chart's LoadBalancer Services get their address only from the AWS Load Balancer Controller, whose
# admission webhook also has to answer for every Service created or changed. Without a working controller
# the webhook refuses the Services, or they never get an address, which helm 4's --wait (kstatus) does not
# wait for: the release would look deployed with no load balancer. Look first, and name what is wrong.
require_load_balancer_controller() {
  [ -n "$(sed -n -E '/^[[:space:]]+type:[[:space:]]*"?LoadBalancer"?[[:space:]]*$/p' "$ROOT/$VALUES_FILE")" ] || return 0
  local where="deployment $LBC_RELEASE in namespace kube-system of $CLUSTER"
  local why="the LoadBalancer Services of $VALUES_FILE would never get an address (helm --wait does not wait for one)"
  local fix="run '$PROG $ENV_NAME deploy' (it installs the controller) or see 'kubectl --context $CLUSTER --namespace kube-system describe deployment $LBC_RELEASE' and its logs (IAM role of its Pod Identity association, VPC id)"
  if probe kubectl --context "$CLUSTER" --namespace kube-system get deployment "$LBC_RELEASE" \
    --output 'jsonpath={.status.conditions[?(@.type=="Available")].status}'; then
    [ "$PROBE_OUT" = True ] ||
      die "the AWS Load Balancer Controller is not Available ($where: Available='$PROBE_OUT'): $why; $fix"
  elif [[ "$PROBE_OUT" == *NotFound* ]]; then
    die "the AWS Load Balancer Controller is not installed ($where not found): $why; $fix"
  elif ! $DRY_RUN; then
    die "could not look up the AWS Load Balancer Controller ($where): $PROBE_OUT"
  fi
  if probe kubectl --context "$CLUSTER" --namespace kube-system get endpointslices \
    --selector "kubernetes.io/service-name=$LBC_WEBHOOK_SERVICE" \
    --output 'jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}'; then
    [ -n "$PROBE_OUT" ] ||
      die "the AWS Load Balancer Controller's webhook Service $LBC_WEBHOOK_SERVICE has no ready endpoints: the API server cannot admit the chart's Services and $why; $fix"
  elif ! $DRY_RUN; then
    die "could not look up the endpoints of $LBC_WEBHOOK_SERVICE in kube-system: $PROBE_OUT"
  fi
  $DRY_RUN || say "AWS Load Balancer Controller ready (Available, webhook endpoints ready)"
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
  [ -n "${TAG:-}" ] || TAG=$(image_tag)
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
# the certificate, which no script may invent. Without them the pods never start and --rollback-on-failure
# only gives up after $HELM_TIMEOUT, so look first and say which one is missing.
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

# overlay_value INDENT KEY: the first value of KEY at INDENT spaces in the overlay (empty if none).
overlay_value() {
  sed -n -E "/^ {$1}$2: */{s/^ *$2: *\"?([^\"#[:space:]]*)\"?.*$/\1/p;q}" "$ROOT/$VALUES_FILE"
}

# With config.upstream.transport ses the pods sign SES requests with the IAM role their ServiceAccount is
# associated with (EKS Pod Identity, $EKSCTL_FILE), and may send only from the SES identity that role
# names. No SMTP credentials are involved. Without the association, the verified identity or the
# configuration set, every message would be deferred: look first and say which is missing.
require_ses_access() {
  local release=$1 region config_set identity
  [ "$(overlay_value 4 transport)" = ses ] || return 0
  region=$(overlay_value 6 region)
  config_set=$(overlay_value 6 configurationSet)
  identity=$(sed -n -E '/^ *- arn:aws:ses:[^:]*:[^:]*:identity\//{s#^.*:identity/([^[:space:]]+).*$#\1#p;q}' "$ROOT/$EKSCTL_FILE")
  [ -n "$region" ] || die "$VALUES_FILE sets config.upstream.transport ses but no config.upstream.ses.region"
  [ -n "$identity" ] || die "$EKSCTL_FILE lets the gateway's role send from no SES identity (no arn:aws:ses:...:identity/NAME resource)"
  # the chart names the release's ServiceAccount after the release
  local no_association="ServiceAccount $NAMESPACE/$release has no EKS Pod Identity association in $CLUSTER, so its pods cannot sign SES requests; create it with 'eksctl create podidentityassociation --config-file $ROOT/$EKSCTL_FILE', then run again"
  if aws_lookup "the Pod Identity associations of $CLUSTER" "$no_association" \
    aws eks list-pod-identity-associations --cluster-name "$CLUSTER" --region "$REGION" \
    --namespace "$NAMESPACE" --service-account "$release" --query 'associations[].associationId' --output text; then
    [[ -n "$PROBE_OUT" && "$PROBE_OUT" != None ]] || die "$no_association"
  fi
  if aws_lookup "SES identity $identity in $region" \
    "SES identity $identity (named in $EKSCTL_FILE) does not exist in $region; create and verify it (aws sesv2 create-email-identity), then run again" \
    aws sesv2 get-email-identity --email-identity "$identity" --region "$region" --query VerifiedForSendingStatus --output text; then
    [ "$PROBE_OUT" = True ] ||
      die "SES identity $identity (named in $EKSCTL_FILE) is not verified for sending in $region; finish its DNS verification, then run again"
  fi
  [ -n "$config_set" ] || return 0
  if aws_lookup "SES configuration set $config_set in $region" \
    "SES configuration set $config_set (config.upstream.ses.configurationSet in $VALUES_FILE) does not exist in $region; create it (aws sesv2 create-configuration-set), then run again" \
    aws sesv2 get-configuration-set --configuration-set-name "$config_set" --region "$region" --query ConfigurationSetName --output text; then
    say "SES: $NAMESPACE/$release has its Pod Identity role, identity $identity is verified, configuration set $config_set exists"
  fi
}

# aws_lookup WHAT NOT_FOUND CMD...: a read-only AWS look-up (answer in PROBE_OUT); true when it answered.
# Stops with NOT_FOUND when AWS says NotFoundException, and with the tool's message on any other failure
# except under --dry-run, which only prints the command.
aws_lookup() {
  local what=$1 not_found=$2
  shift 2
  probe "$@" && return 0
  [[ "$PROBE_OUT" != *NotFoundException* ]] || die "$not_found"
  $DRY_RUN || die "could not look up $what: $PROBE_OUT"
  return 1
}

# helm_release RELEASE REPOSITORY TAG EXTRA_ARGS...: install or upgrade one release of the chart with the
# environment's overlay; --rollback-on-failure rolls it back by itself if it does not become ready (helm 4's
# --wait watches kstatus: Deployments rolled out, pods Ready, Jobs complete).
helm_release() {
  local release=$1 repository=$2 tag=$3
  shift 3
  require_file "$CHART_DIR/Chart.yaml" "run 'make synth' to generate the chart"
  require_file "$VALUES_FILE" "the $ENV_NAME overlay is part of this repository"
  require_secrets
  require_ses_access "$release"
  run helm upgrade --install "$release" "$ROOT/$CHART_DIR" \
    --kube-context "$CLUSTER" --namespace "$NAMESPACE" --create-namespace \
    --values "$ROOT/$VALUES_FILE" ${EXTRA_VALUES[@]+"${EXTRA_VALUES[@]}"} \
    --set "image.repository=$repository" --set "image.tag=$tag" \
    "$@" --rollback-on-failure --wait --timeout "$HELM_TIMEOUT"
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

# Canary gates --------------------------------------------------------------------------------------------

# read_canary: CANARY_IMAGE, CANARY_STEP and CANARY_STEP_STARTED of the running canary (all empty without one).
read_canary() {
  local state
  state=$(inspect kubectl --context "$CLUSTER" --namespace "$NAMESPACE" get deployments \
    --selector "app.kubernetes.io/instance=$CANARY_RELEASE" \
    --output "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}|{.metadata.annotations.$STEP_ANNOTATION}|{.metadata.annotations.$STEP_STARTED_ANNOTATION}{end}")
  IFS='|' read -r CANARY_IMAGE CANARY_STEP CANARY_STEP_STARTED <<<"$state" || true
}

# record_step: the canary's Deployment remembers its share and since when, for the next step's soak time.
record_step() {
  run kubectl --context "$CLUSTER" --namespace "$NAMESPACE" annotate deployments \
    --selector "app.kubernetes.io/instance=$CANARY_RELEASE" --overwrite \
    "$STEP_ANNOTATION=$PERCENT" "$STEP_STARTED_ANNOTATION=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}

# epoch TIME: seconds since 1970 of a UTC time like 2026-12-03T04:40:00Z (GNU date, then BSD date).
epoch() {
  date -u -d "$1" +%s 2>/dev/null || date -j -u -f %Y-%m-%dT%H:%M:%SZ "$1" +%s 2>/dev/null
}

# require_soak NEXT DEFAULT: refuse NEXT before the canary has run at its current step for the minimum time.
require_soak() {
  local next=$1 minimum
  minimum=$(seconds "${MIN_SOAK:-$2}")
  if [ "$minimum" -eq 0 ]; then
    say "soak time: no minimum (--min-soak 0)"
    return
  fi
  local started now
  [ -n "$CANARY_STEP_STARTED" ] ||
    die "refusing to $next: the canary's Deployment does not record when its step started (annotation $STEP_STARTED_ANNOTATION), so its soak time is unknown; once it has run long enough, pass --min-soak 0"
  started=$(epoch "$CANARY_STEP_STARTED") ||
    die "refusing to $next: the canary's annotation $STEP_STARTED_ANNOTATION is not a UTC time like 2026-12-03T04:40:00Z: '$CANARY_STEP_STARTED'"
  now=$(date -u +%s)
  local soaked=$((now - started))
  [ "$soaked" -ge "$minimum" ] ||
    die "refusing to $next: the canary has run at ${CANARY_STEP:-?}% for $(duration "$soaked") (since $CANARY_STEP_STARTED), less than the minimum $(duration "$minimum"); wait $(duration $(((minimum - soaked + 59) / 60 * 60))) more, or set --min-soak"
  say "soak time: ${CANARY_STEP:-?}% for $(duration "$soaked") since $CANARY_STEP_STARTED, at least $(duration "$minimum") required: ok"
}

# release_metrics RELEASE: the /metrics text of every running gateway pod of RELEASE, one after the other.
release_metrics() {
  local release=$1 names pod
  names=$(inspect kubectl --context "$CLUSTER" --namespace "$NAMESPACE" get pods \
    --selector "app.kubernetes.io/name=$APP_NAME,app.kubernetes.io/instance=$release" \
    --field-selector status.phase=Running --output 'jsonpath={.items[*].metadata.name}')
  local pods=()
  read -r -a pods <<<"$names" || true
  [ "${#pods[@]}" -gt 0 ] || die "refusing to judge the canary: release $release has no running pods in $NAMESPACE to read metrics from"
  say "reading /metrics of ${#pods[@]} pod(s) of $release"
  for pod in "${pods[@]}"; do
    inspect kubectl --context "$CLUSTER" --namespace "$NAMESPACE" get --raw "/api/v1/namespaces/$NAMESPACE/pods/$pod:$OPS_PORT/proxy/metrics"
    echo
  done
}

# canary_analysis NEXT: compare the canary's deferral and refusal ratios with the stable release's
# (scripts/lib/canary-analysis.awk) and refuse NEXT when the canary is worse or there is too little traffic.
canary_analysis() {
  local next=$1 stable canary verdict status=0
  stable=$(release_metrics "$RELEASE")
  canary=$(release_metrics "$CANARY_RELEASE")
  verdict=$(awk -v "max_increase=$CANARY_MAX_RATIO_INCREASE" -v "min_messages=$CANARY_MIN_MESSAGES" \
    -f "$ROOT/scripts/lib/canary-analysis.awk" \
    release=stable <(printf '%s\n' "$stable") release=canary <(printf '%s\n' "$canary")) || status=$?
  local line
  while IFS= read -r line; do say "canary analysis: $line"; done <<<"$verdict"
  case "$status" in
    0) ;;
    1) die "refusing to $next: the canary ($CANARY_RELEASE) does worse than $RELEASE by more than $CANARY_MAX_RATIO_INCREASE percentage points (--max-ratio-increase); look at its logs, then '$PROG $ENV_NAME abort'" ;;
    2)
      $FORCE || die "refusing to $next: too little traffic to judge the canary (each release must have answered at least $CANARY_MIN_MESSAGES messages, --min-messages); wait for more, or pass --force to go on without the comparison"
      say "going on without the comparison (--force)"
      ;;
    *) die "refusing to $next: the canary analysis could not read the metrics (exit $status)" ;;
  esac
}

# canary_gates NEXT DEFAULT_SOAK: the soak time, then the metrics, before NEXT.
canary_gates() {
  require_soak "$1" "$2"
  canary_analysis "$1"
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

# A chart from before the smtp-gateway/stable-release label made Services that select by instance, and
# they switch only on the stable release's next upgrade (CHANGELOG.md): until then a canary gets no traffic.
require_stable_services_switched() {
  local legacy
  legacy=$(query "" kubectl --context "$CLUSTER" --namespace "$NAMESPACE" get services \
    --selector "app.kubernetes.io/instance=$RELEASE" --output 'jsonpath={.items[*].spec.selector.app\.kubernetes\.io/instance}')
  [ -z "$legacy" ] ||
    die "the Services of $RELEASE still select pods by app.kubernetes.io/instance (made by an earlier chart), so a canary would get no traffic; upgrade the stable release once more first ('$PROG $ENV_NAME deploy', see CHANGELOG.md)"
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
  TAG=$(image_tag)
  read_canary
  if [ -z "$CANARY_IMAGE" ]; then
    [ "$PERCENT" -le "$CANARY_START_MAX_PERCENT" ] ||
      die "refusing to start a canary at $PERCENT%: no canary release $CANARY_RELEASE is running in $NAMESPACE, and a new one starts at $CANARY_START_MAX_PERCENT% or less so the canary gates judge it before it takes more; run '$PROG $ENV_NAME rollout $CANARY_START_MAX_PERCENT' first"
    require_stable_services_switched
  else
    [ "${CANARY_IMAGE##*:}" = "$TAG" ] ||
      die "the canary runs $CANARY_IMAGE, not this revision ($TAG): promote or abort it first, or run this from the revision it runs"
    if [ "$PERCENT" -gt "${CANARY_STEP:-0}" ]; then
      canary_gates "grow the canary from ${CANARY_STEP:-?}% to $PERCENT%" "$CANARY_MIN_SOAK_ROLLOUT"
    fi
  fi
  ensure_ecr_repository
  build_and_push_image
  local stable canary
  stable=$(stable_replicas)
  canary=${CANARY_REPLICAS:-$(canary_replicas "$stable" "$PERCENT")}
  say "canary $IMAGE:$TAG with $canary pod(s) beside $stable stable pod(s)"
  helm_release "$CANARY_RELEASE" "$IMAGE" "$TAG" "${CANARY_VALUES[@]}" \
    --set autoscaling.enabled=false --set "replicaCount=$canary"
  # The soak time runs from the first time the canary reached this share.
  [ "$PERCENT" = "$CANARY_STEP" ] || record_step
  say "canary share: $canary of $((stable + canary)) pods ($((100 * canary / (stable + canary)))%, asked $PERCENT%)." \
    "Watch it, then: $PROG $ENV_NAME rollout 50 | promote | abort"
}

promote() {
  confirm_production "promote the canary to the stable release in $ENV_NAME ($CLUSTER)"
  ensure_cluster false
  read_canary
  [[ "$CANARY_IMAGE" == *:* ]] || die "no canary release $CANARY_RELEASE is running in $NAMESPACE; start one with '$PROG $ENV_NAME rollout 10'"
  canary_gates "promote $CANARY_IMAGE" "$CANARY_MIN_SOAK_PROMOTE"
  require_load_balancer_controller
  say "promoting $CANARY_IMAGE to $RELEASE"
  helm_release "$RELEASE" "${CANARY_IMAGE%:*}" "${CANARY_IMAGE##*:}"
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
  require_load_balancer_controller
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
