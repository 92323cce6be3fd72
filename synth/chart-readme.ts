/**
 * The chart's README.md (its Artifact Hub page): what it needs, how to install
 * it from the OCI registry, upgrade, uninstall, and every value.
 */
import { SECRET_KEYS } from '../gateway/src/config/constants';
import { CHART_NAME } from './constructs/smtp-gateway-chart';
import { PROJECT } from './project';
import { CHART_OWNED_CONFIG } from './values/chart-owned-config';

const ownedTable = () =>
  ['| Key | Instead |', '| --- | --- |', ...Object.entries(CHART_OWNED_CONFIG).map(([key, hint]) => `| \`config.${key}\` | ${hint.replace(/\|/g, '\\|')} |`)].join(
    '\n',
  );

export function chartReadme(valuesTable: string): string {
  const release = CHART_NAME;
  return `# ${CHART_NAME} Helm chart

${PROJECT.description}. It answers \`250\` only once the upstream accepted the message.

Source, issues and runbooks: ${PROJECT.home}. The chart is synthesised from TypeScript (synth/ in the
repository); values.schema.json rejects unknown keys and wrong types, so a typo fails the install with the key named.

## Prerequisites

- Kubernetes 1.28 or newer and Helm 3.8 or newer (OCI support).
- A smarthost to relay to (Amazon SES SMTP credentials), in a Secret you create (below). Without
  \`config.upstream.host\` the gateway writes mail to an embedded development upstream inside the pod.
- Optional, each only for the values that use it:
  - [AWS Load Balancer Controller](https://kubernetes-sigs.github.io/aws-load-balancer-controller/) for
    \`services.*.type: LoadBalancer\` (an NLB with IP targets and PROXY protocol v2).
  - [cert-manager](https://cert-manager.io/) (or any issuer) for the \`kubernetes.io/tls\` Secret named in
    \`tls.existingSecret\` (STARTTLS and SMTPS).
  - [Prometheus Operator](https://prometheus-operator.dev/) (e.g. kube-prometheus-stack) for
    \`metrics.serviceMonitor\` and \`metrics.prometheusRule\`; without its API the chart leaves them out and says so.
  - The Grafana chart's dashboard sidecar for \`metrics.grafanaDashboard\`.

## Install

The chart is published as an OCI artifact, \`oci://<registry>/charts/${CHART_NAME}\` (the release pipeline pushes
it to Amazon ECR next to the image). Create the namespace and the Secrets first:

\`\`\`sh
kubectl create namespace smtp-gateway
kubectl -n smtp-gateway create secret generic smtp-gateway-credentials \\
  --from-literal=${SECRET_KEYS.upstreamUsername}="$SES_SMTP_USER" --from-literal=${SECRET_KEYS.upstreamPassword}="$SES_SMTP_PASSWORD" \\
  --from-file=${SECRET_KEYS.authUsers}=./auth-users

aws ecr get-login-password | helm registry login --username AWS --password-stdin "$REGISTRY"
helm upgrade --install ${release} oci://$REGISTRY/charts/${CHART_NAME} --version ${PROJECT.version} \\
  -n smtp-gateway -f my-values.yaml --atomic --wait
helm test ${release} -n smtp-gateway --logs   # a pod speaks SMTP (EHLO, NOOP, QUIT) to the Service
\`\`\`

A minimal \`my-values.yaml\`:

\`\`\`yaml
image:
  repository: <registry>/smtp-gateway
config:
  upstream:
    host: email-smtp.us-east-1.amazonaws.com
  policy:
    allowedNetworks: [10.0.0.0/16]
secret:
  existingSecret: smtp-gateway-credentials
  useUpstreamCredentials: true
\`\`\`

As a dependency of an umbrella chart:

\`\`\`yaml
dependencies:
  - name: ${CHART_NAME}
    version: ${PROJECT.version}
    repository: oci://<registry>/charts
\`\`\`

\`global.imageRegistry\` then replaces the registry of every image the chart runs (a pull-through mirror).

## Upgrade

\`helm upgrade\` with the same values rolls the pods one at a time (one extra pod, none removed first). A change to
\`config\` or to the chart-made Secret rolls them too (checksum annotations). Each pod drains on the way out: the
preStop pause lets the NLB deregister it, then the gateway stops accepting and lets transactions finish;
\`terminationGracePeriodSeconds\` covers both. Read the [changelog](${PROJECT.home}/blob/main/CHANGELOG.md) before
upgrading across versions; in particular:

- 0.1.0: the chart refuses the \`config\` keys it sets itself (table below) instead of silently overriding them:
  remove them from your values and use the value named instead.
- \`services.*.loadBalancerClass\` and a Service's \`type\` cannot change on an existing Service: uninstall the
  Service (or the release) first, which replaces the NLB and its DNS name.

## Uninstall

\`\`\`sh
helm uninstall ${release} -n smtp-gateway --wait
\`\`\`

The AWS Load Balancer Controller deletes the NLBs it made for the Services. The Secrets you created, and objects
from \`extraDeploy\` that carry \`helm.sh/resource-policy: keep\`, stay; delete them with kubectl.

## Settings the chart owns

The chart sets these gateway settings in every pod; a values file that sets one fails with this message:

${ownedTable()}

## Values

${valuesTable}
`;
}
