/**
 * The stand-ins for aws, eksctl and docker that scenario 5 puts on PATH in front of
 * scripts/deploy-aws-production.sh: each records its calls, one line each, and answers as AWS would for an
 * existing production cluster in account ACCOUNT; anything else fails naming the call.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The AWS account `aws sts get-caller-identity` answers: the image name the script computes contains it. */
export const ACCOUNT = '123456789012';

/** The stand-ins on PATH; CALLS gets one line per call. */
export function writeStandIns(dir: string, calls: string, kubeconfig: string): void {
  mkdirSync(dir, { recursive: true });
  const script = (name: string, body: string) => {
    writeFileSync(join(dir, name), `#!/usr/bin/env bash\nset -euo pipefail\nprintf '%s\\n' "${name} $*" >>'${calls}'\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  };
  script('aws', `case "$1 $2" in
  "sts get-caller-identity") echo ${ACCOUNT} ;;
  "eks describe-cluster") echo ACTIVE ;;
  "eks update-kubeconfig")
    alias=""; while [ $# -gt 0 ]; do [ "$1" = --alias ] && alias=$2; shift; done
    kubectl config set-context "$alias" --cluster test-cluster --user admin --kubeconfig '${kubeconfig}' >/dev/null
    echo "Added new context $alias" ;;
  "ecr describe-repositories") echo '{"repositories":[{"repositoryName":"smtp-gateway"}]}' ;;
  "ecr get-login-password") echo stand-in-password ;;
  "ecr describe-images")
    tag=$(printf '%s\\n' "$@" | sed -n 's/^imageTag=//p')
    [ -f '${dir}/pushed-'"$tag" ] || { echo "An error occurred (ImageNotFoundException): no image $tag" >&2; exit 254; } ;;
  "eks list-pod-identity-associations") echo a-0stand1n ;;
  "sesv2 get-email-identity") echo True ;;
  "sesv2 get-configuration-set") echo smtp-gateway-production ;;
  *) echo "aws stand-in: no answer for 'aws $*'" >&2; exit 2 ;;
esac`);
  script('docker', `case "$1" in
  login) cat >/dev/null; echo "Login Succeeded" ;;
  build) ;;
  push) touch '${dir}/pushed-'"\${2##*:}" ;;
  *) echo "docker stand-in: no answer for 'docker $*'" >&2; exit 2 ;;
esac`);
  script('eksctl', `echo "eksctl stand-in: a rollout must not create or change the cluster ('eksctl $*')" >&2; exit 2`);
}
