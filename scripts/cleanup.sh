#!/usr/bin/env bash
# Deletes an smtp-gateway environment: the Helm releases first, so the
# AWS Load Balancer Controller (still running) deletes the NLBs it made, then the EKS cluster with its VPC.
# cleanup-aws-staging.sh and cleanup-aws-production.sh are the front doors.
set -euo pipefail

PROG=$(basename "$0")
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$ROOT/scripts/lib/common.sh"

usage() {
  cat <<USAGE
Usage: $PROG ENVIRONMENT [OPTIONS]

ENVIRONMENT   staging (cluster smtp-gateway-staging) or production (cluster smtp-gateway-prod)

In order: check the tools and the AWS identity; ask for confirmation; uninstall the canary and the
$RELEASE release from namespace $NAMESPACE (waiting, so the load balancers are deleted by the controller
that made them); delete the cluster's CloudWatch dashboard, if it runs Container Insights; delete the
cluster with eksctl (its node groups, VPC and NAT gateway). The ECR repository
$ECR_REPOSITORY is kept: staging and production share its images.

OPTIONS
  --keep-cluster  Only uninstall the releases.
  --dry-run       Print each command instead of running it; changes nothing.
  --yes, -y       Do not ask for confirmation.
  -h, --help      Show this help.
Needs: aws, eksctl, helm; AWS credentials (AWS_PROFILE or the usual AWS_* variables).
USAGE
}

parse_args() {
  KEEP_CLUSTER=false
  local positional=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=true ;;
      -y | --yes) ASSUME_YES=true ;;
      --keep-cluster) KEEP_CLUSTER=true ;;
      -*) die "unknown option '$1' (try --help)" ;;
      *) positional+=("$1") ;;
    esac
    shift
  done
  [ "${#positional[@]}" -eq 1 ] || die "expected one ENVIRONMENT (staging or production), got ${#positional[@]} argument(s) (try --help)"
  select_env "${positional[0]}"
}

uninstall() {
  run helm uninstall "$1" --kube-context "$CLUSTER" --namespace "$NAMESPACE" --ignore-not-found --wait --timeout 10m
}

# The dashboard deploy.sh puts for a cluster running Container Insights goes with the cluster.
delete_cloudwatch_dashboard() {
  runs_container_insights || return 0
  if probe aws cloudwatch get-dashboard --dashboard-name "$CLUSTER" --region "$REGION" --query DashboardName --output text || $DRY_RUN; then
    run aws cloudwatch delete-dashboards --dashboard-names "$CLUSTER" --region "$REGION"
  elif [[ "$PROBE_OUT" == *ResourceNotFound* ]]; then
    say "no CloudWatch dashboard $CLUSTER to delete"
  else
    die "could not look up CloudWatch dashboard $CLUSTER: $PROBE_OUT"
  fi
}

main() {
  parse_args "$@"
  require_tools aws eksctl helm
  local account what
  account=$(aws_account)
  what="delete the $RELEASE releases"
  $KEEP_CLUSTER || what+=" and the cluster $CLUSTER with its VPC"
  confirm "$what in $ENV_NAME (account $account, $REGION)"
  if ! probe aws eks describe-cluster --name "$CLUSTER" --region "$REGION" --query cluster.status --output text; then
    if [[ "$PROBE_OUT" == *ResourceNotFoundException* ]]; then
      say "cluster $CLUSTER does not exist; nothing to delete"
      return
    fi
    $DRY_RUN || die "could not look up cluster $CLUSTER: $PROBE_OUT"
  fi
  update_kubeconfig
  uninstall "$CANARY_RELEASE"
  uninstall "$RELEASE"
  if $KEEP_CLUSTER; then
    say "releases removed; cluster $CLUSTER kept"
    return
  fi
  delete_cloudwatch_dashboard
  say "deleting cluster $CLUSTER (10-15 minutes)"
  run eksctl delete cluster --name "$CLUSTER" --region "$REGION" --wait
}

main "$@"
