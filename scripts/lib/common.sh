# shellcheck shell=bash
# Shared by the AWS scripts (deploy.sh, cleanup.sh): the two environments, a dry-run-aware command
# runner, tool checks and confirmation. Sourced, not run; the caller sets PROG and ROOT and enables
# `set -euo pipefail`.
# shellcheck disable=SC2034 # the names below are used by the scripts that source this file

# Names the chart, the cluster files and the README's table of the environments agree on.
RELEASE=smtp-gateway
CANARY_RELEASE=smtp-gateway-canary
NAMESPACE=smtp-gateway
ECR_REPOSITORY=smtp-gateway
CHART_DIR=charts/smtp-gateway
# The chart's app.kubernetes.io/name, and the container port of the gateway's /metrics (CONTAINER_PORTS.ops).
APP_NAME=smtp-gateway
OPS_PORT=9090
LBC_RELEASE=aws-load-balancer-controller
# The Service of the controller's admission webhook (the name its chart gives it).
LBC_WEBHOOK_SERVICE=aws-load-balancer-webhook-service
CLOUDWATCH_DASHBOARD=deploy/cloudwatch-dashboard.json

DRY_RUN=false
ASSUME_YES=false

die() {
  echo "$PROG: $*" >&2
  exit 1
}

# Progress goes to stderr so stdout carries only what a command is asked for (and --dry-run's plan).
say() { echo "==> $*" >&2; }

# select_env NAME: sets ENV_NAME, CLUSTER, REGION, EKSCTL_FILE, VALUES_FILE for staging or production.
select_env() {
  case "$1" in
    staging)
      ENV_NAME=staging CLUSTER=smtp-gateway-staging
      EKSCTL_FILE=eksctl/staging.yaml VALUES_FILE=values/staging.yaml
      ;;
    production | prod)
      ENV_NAME=production CLUSTER=smtp-gateway-prod
      EKSCTL_FILE=eksctl/prod.yaml VALUES_FILE=values/prod.yaml
      ;;
    *) die "unknown environment '$1': expected 'staging' or 'production'" ;;
  esac
  REGION=us-east-1
}

# quote ARGS...: the command line as a shell would need it typed.
quote() {
  local out="" arg
  for arg in "$@"; do out+="${out:+ }$(printf '%q' "$arg")"; done
  echo "$out"
}

# run CMD ARGS...: print the command; unless --dry-run, run it and stop the script if it fails.
run() {
  if $DRY_RUN; then
    quote "$@"
    return 0
  fi
  echo "+ $(quote "$@")" >&2
  local status=0
  "$@" || status=$?
  [ "$status" -eq 0 ] || die "step failed (exit $status): $(quote "$@")"
}

# query PLACEHOLDER CMD ARGS...: run a read-only command for its output. Under --dry-run print it and
# answer PLACEHOLDER instead, so the rest of the plan can still be printed.
query() {
  local placeholder=$1
  shift
  if $DRY_RUN; then
    quote "$@" >&2
    echo "$placeholder"
    return 0
  fi
  inspect "$@"
}

# inspect CMD ARGS...: run a read-only command for its output, even under --dry-run: a decision the dry run
# must show (may the canary go on?) depends on it. Stops the script if it fails.
inspect() {
  ! $DRY_RUN || echo "+ $(quote "$@")   # read-only, run for the decision" >&2
  local status=0
  "$@" || status=$?
  [ "$status" -eq 0 ] || die "step failed (exit $status): $(quote "$@")"
}

# probe CMD ARGS...: run a read-only command whose failure is an answer (does X exist?). Sets PROBE_OUT
# (stdout and stderr) and returns its exit status. Under --dry-run prints it and answers "no" (status 1).
probe() {
  if $DRY_RUN; then
    quote "$@"
    PROBE_OUT="(dry run: not looked up)"
    echo "# $PROBE_OUT"
    return 1
  fi
  local status=0
  PROBE_OUT=$("$@" 2>&1) || status=$?
  return "$status"
}

# require_tools TOOL...: stop naming every missing tool, before anything has been changed. A dry run
# calls none of them, so it only says which ones a real run will need.
require_tools() {
  local missing=() tool
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if $DRY_RUN; then
    say "dry run: ${missing[*]} not found on PATH; a real run needs them"
    return 0
  fi
  die "missing required tool(s): ${missing[*]} (install them and put them on PATH)"
}

# require_file FILE HINT: stop naming a missing file the environment needs and how to get it.
require_file() {
  [ -e "$ROOT/$1" ] || die "$1 not found in $ROOT; $2"
}

# aws_account: the account the current AWS credentials belong to; stops if there are none.
aws_account() {
  local account
  account=$(query ACCOUNT_ID aws sts get-caller-identity --query Account --output text) ||
    die "no usable AWS credentials (aws sts get-caller-identity failed); set AWS_PROFILE or log in with 'aws sso login'"
  [ -n "$account" ] || die "aws sts get-caller-identity returned no account"
  echo "$account"
}

# refuse_dirty_tree: production ships only committed code.
refuse_dirty_tree() {
  local dirty
  dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no)
  [ -z "$dirty" ] || die "refusing to touch $ENV_NAME from a work tree with uncommitted changes:
$dirty
commit or stash them first"
}

# confirm WHAT: ask the operator to type the cluster name, unless --yes. Without a terminal or input,
# refuse rather than guess.
confirm() {
  $ASSUME_YES && return 0
  $DRY_RUN && return 0
  echo "$PROG: about to $1." >&2
  printf 'Type the cluster name (%s) to continue: ' "$CLUSTER" >&2
  local answer=""
  read -r answer || true
  [ "$answer" = "$CLUSTER" ] || die "not confirmed (expected '$CLUSTER', got '${answer}'); pass --yes to skip the question"
}

# runs_container_insights: true when the environment's eksctl file installs the amazon-cloudwatch-observability
# add-on; such a cluster has the CloudWatch dashboard of $CLOUDWATCH_DASHBOARD, named after the cluster.
runs_container_insights() {
  local line pattern='^[[:space:]]*-[[:space:]]*name:[[:space:]]*amazon-cloudwatch-observability[[:space:]]*$'
  while IFS= read -r line; do
    [[ $line =~ $pattern ]] && return 0
  done <"$ROOT/$EKSCTL_FILE"
  return 1
}

# update_kubeconfig: point kubectl and helm at the environment's cluster.
update_kubeconfig() {
  run aws eks update-kubeconfig --name "$CLUSTER" --region "$REGION" --alias "$CLUSTER"
}
