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
- Somewhere to relay to: the Amazon SES v2 API with the pods' IAM role (\`config.upstream.transport: ses\` and an
  EKS Pod Identity association, below), or an SMTP smarthost (\`config.upstream.host\`, its credentials in a
  Secret you create).
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
  -n smtp-gateway -f my-values.yaml --rollback-on-failure --wait
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

## Sending through Amazon SES with an IAM role

\`config.upstream.transport: ses\` sends each message with the SES v2 API (SendEmail, raw content, the envelope
recipients as Destination so Bcc recipients are kept, SES's MessageId in the client's 250). The pods sign the
requests with the IAM role their ServiceAccount is associated with through EKS Pod Identity; there is no SES
password in values or Secrets.

1. IAM: a Pod Identity association for the release's ServiceAccount (\`serviceAccount.name\`, by default the
   release's full name; a canary release has its own) whose role may only \`ses:SendEmail\` and
   \`ses:SendRawEmail\` on the SES identity and configuration set, and the \`eks-pod-identity-agent\` add-on. The
   repository's \`eksctl/*.yaml\` define both (\`iam.podIdentityAssociations\`); the ServiceAccount needs no
   annotation.
2. SES: a verified identity for the sending domain and the configuration set, in the region of
   \`config.upstream.ses.region\`.
3. Values: \`config.upstream.transport: ses\`, \`config.upstream.ses.region\`, \`config.upstream.ses.configurationSet\`,
   and \`secret.useUpstreamCredentials: false\` (the chart fails the install otherwise, as the gateway would refuse
   the password file). \`values/staging.yaml\` and \`values/prod.yaml\` do this.

SES errors become SMTP replies from one table (the repository README, "SES errors and the client's reply"):
throttling, SES trouble, timeouts and credential problems are \`451\`, a rejected message or sender \`5xx\` with
SES's reason. The gateway never resends a request that may have reached SES. \`config.upstream.maxWaitSeconds\`
bounds how long a client waits for a send slot; past it, \`451 4.7.0\` with nothing sent.

Set \`config.upstream.accountMaxSendRate\` to the account's maximum send rate: the chart then creates a headless
Service of the release's ready pods (\`<fullname>-peers\`, \`publishNotReadyAddresses: false\`), each pod resolves
it every \`config.upstream.accountShare.refreshSeconds\` and sends at most its share (the rate divided by the
ready pods), so the release never exceeds the account's rate however many pods the HPA runs. A throttling reply
halves a pod's rate at once, and it recovers over \`accountShare.recoverySeconds\`
(\`smtp_gateway_upstream_throttled_total\`, alert \`SmtpGatewayUpstreamThrottled\`).

## Secrets and rotation

The pods carry a \`checksum/secret\` annotation of the Secret the chart creates, so changing \`secret.*\` values
rolls them. A \`secret.existingSecret\` (or \`tls.existingSecret\`) cannot be checksummed by the chart, and needs
no restart: the gateway reloads the AUTH users file, the TLS certificate and, with \`transport: smtp\`, the
upstream user name, password and CA files when the kubelet updates them; new upstream connections use the new
values, and a login the smarthost refuses is answered \`451\` and counted in
\`smtp_gateway_upstream_credential_failures_total\`.

## Uninstall

\`\`\`sh
helm uninstall ${release} -n smtp-gateway --wait
\`\`\`

The AWS Load Balancer Controller deletes the NLBs it made for the Services. The Secrets you created, and objects
from \`extraDeploy\` that carry \`helm.sh/resource-policy: keep\`, stay; delete them with kubectl.

## Per-application policy

Give each application, by AUTH user or client network, its allowed senders, a message rate, a recipient limit
and the SES configuration set and tags its messages are filed under. Set one of
\`applications.existingSecret\`, \`applications.existingConfigMap\` (key \`applications.yaml\`) or
\`applications.inline\`; the pods mount it and reload it on change, without a restart:

\`\`\`yaml
config:
  applications:
    unmatched: refuse          # or global (default): sessions of no application follow the global policy
applications:
  inline:
    - name: billing
      match: { users: [billing-app], networks: [10.0.12.0/24] }
      senders: [billing.example.com, noreply@example.com]
      messagesPerMinute: 600
      maxRecipients: 10
      ses: { configurationSet: billing, tags: { app: billing, team: payments } }
\`\`\`

The gateway's README ("Per-application policy") explains the matching (most specific wins), the replies
applications get and the metrics (\`smtp_gateway_application_messages_total{application}\`).

## Settings the chart owns

The chart sets these gateway settings in every pod; a values file that sets one fails with this message:

${ownedTable()}

## Values

${valuesTable}
`;
}
