/**
 * The chart's values: ONE typed model (zod) from which synth writes values.yaml
 * (defaults, every key commented), values.schema.json (strict: a typo in an
 * overlay is an error) and the values table of the chart README. The `config`
 * section is the gateway's own schema, so the chart accepts exactly what the
 * gateway does, less the keys the chart sets itself (refused when set).
 */
import { z } from 'zod';
import { MOUNT_PATHS, SECRET_KEYS, SERVICE_PORTS, type ListenerName } from '../../gateway/src/config/constants';
import { PROJECT } from '../project';
import { CHART_OWNED_CONFIG, chartConfigSchema } from './chart-owned-config';

/** A Kubernetes resource quantity such as 500m, 1, 512Mi. */
const quantity = z
  .union([
    z.string().regex(/^[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$/, {
      message: 'expected a Kubernetes quantity such as 500m, 2 or 512Mi',
    }),
    z.number().min(0),
  ])
  .describe('A Kubernetes quantity.');

const stringMap = (what: string) => z.record(z.string(), z.string()).default({}).describe(what);
/** Lists and maps handed to Kubernetes as they are (their own schema is Kubernetes'). */
const passthroughList = (what: string) => z.array(z.record(z.string(), z.unknown())).default([]).describe(what);
const passthroughMap = (what: string) => z.record(z.string(), z.unknown()).default({}).describe(what);
const seconds = (fallback: number, what: string, max?: number) =>
  (max === undefined ? z.number().int().min(0) : z.number().int().min(0).max(max)).default(fallback).describe(what);

const pullPolicy = () => z.enum(['IfNotPresent', 'Always', 'Never']).default('IfNotPresent').describe('Image pull policy.');
/** A Prometheus duration such as 30s. */
const duration = (fallback: string, what: string) =>
  z.string().regex(/^\d+(ms|s|m|h)$/, { message: `expected a duration such as ${fallback}` }).default(fallback).describe(what);

const resourceList = (cpu: string, memory: string) =>
  z
    .strictObject({
      cpu: quantity.default(cpu).describe('CPU.'),
      memory: quantity.default(memory).describe('Memory.'),
    })
    .prefault({});

const probe = (period: number, failures: number, what: string) =>
  z
    .strictObject({
      periodSeconds: z.number().int().min(1).default(period).describe('How often to probe.'),
      timeoutSeconds: z.number().int().min(1).default(2).describe('How long one probe may take.'),
      failureThreshold: z.number().int().min(1).default(failures).describe('Failures in a row before the probe fails.'),
    })
    .prefault({})
    .describe(what);

const servicePorts = (listeners: ListenerName[]) =>
  z
    .strictObject(
      Object.fromEntries(
        listeners.map((l) => [l, z.number().int().min(1).max(65535).default(SERVICE_PORTS[l]).describe(`Port clients reach the ${l} listener on (the container listens on its own fixed port).`)]),
      ),
    )
    .prefault({})
    .describe('Service ports, by listener.');

/** One load-balanced listener group (the chart runs two AWS NLBs). */
const service = (what: string, listeners: ListenerName[]) =>
  z
    .strictObject({
      enabled: z.boolean().default(true).describe('Render this Service (it is left out anyway while all its listeners are disabled in config.listeners).'),
      ports: servicePorts(listeners),
      type: z.enum(['ClusterIP', 'LoadBalancer']).default('ClusterIP').describe('ClusterIP for in-cluster clients; LoadBalancer for an AWS NLB (AWS Load Balancer Controller).'),
      annotations: stringMap('Extra annotations; the NLB annotations the chart sets (from loadBalancer.*) keep their values.'),
      loadBalancer: z
        .strictObject({
          scheme: z.enum(['internal', 'internet-facing']).default('internal').describe('NLB scheme.'),
          sourceRanges: z.array(z.string()).default([]).describe('CIDRs allowed to reach the NLB (loadBalancerSourceRanges); empty allows all.'),
          preserveClientIp: z.boolean().default(true).describe('Keep the client IP as the source address (target group attribute preserve_client_ip); always off while config.proxyProtocol.enabled, whose header carries the client IP instead.'),
        })
        .prefault({})
        .describe('AWS NLB settings, used when type is LoadBalancer. PROXY protocol v2 is turned on by config.proxyProtocol.enabled.'),
      externalTrafficPolicy: z.enum(['Cluster', 'Local']).default('Cluster').describe('externalTrafficPolicy of a LoadBalancer Service (Local keeps traffic on the node it arrives at; with NLB ip targets it changes nothing).'),
      loadBalancerClass: z.string().default('').describe('loadBalancerClass of a LoadBalancer Service, e.g. service.k8s.aws/nlb so only the AWS Load Balancer Controller handles it; empty leaves it to the cluster default. Immutable once the Service exists.'),
    })
    .prefault({})
    .describe(what);

export const valuesSchema = z.strictObject({
  global: z
    .looseObject({
      imageRegistry: z.string().default('').describe('Registry that replaces the registry of every image the chart runs (image.repository, tests.image.repository), e.g. a pull-through mirror.'),
    })
    .prefault({})
    .describe('Values Helm shares with every chart of an umbrella release; other keys are accepted and ignored.'),
  commonLabels: stringMap('Labels added to every object the chart renders (not to extraDeploy); the chart\'s own app.kubernetes.io/* and helm.sh/chart labels cannot be replaced.'),
  commonAnnotations: stringMap('Annotations added to every object the chart renders (not to extraDeploy).'),
  nameOverride: z.string().default('').describe('Replaces the chart name in resource names.'),
  fullnameOverride: z.string().default('').describe('Replaces the whole <release>-<chart> resource name prefix.'),
  image: z
    .strictObject({
      repository: z.string().min(1).default('ghcr.io/example/smtp-gateway').describe('Image repository.'),
      tag: z.string().default('').describe("Image tag; empty uses the chart's appVersion."),
      digest: z.string().regex(/^(sha256:[a-f0-9]{64})?$/, { message: 'expected sha256:<64 hex digits> or empty' }).default('').describe('Image digest (sha256:…); when set it pins the image and the tag is only informative.'),
      pullPolicy: pullPolicy(),
    })
    .prefault({})
    .describe('The gateway image.'),
  imagePullSecrets: passthroughList('Secrets for pulling the image, e.g. [{name: regcred}].'),
  replicaCount: z.number().int().min(0).default(1).describe('Pods to run while autoscaling is off.'),
  podLabels: stringMap('Extra labels on the pods.'),
  podAnnotations: stringMap('Extra annotations on the pods.'),
  priorityClassName: z.string().default('').describe('PriorityClass of the pods; empty uses the cluster default.'),
  serviceAccount: z
    .strictObject({
      create: z.boolean().default(true).describe('Create a ServiceAccount for the pods.'),
      name: z.string().default('').describe('Name of the ServiceAccount to use; empty uses the release name when create is true, else "default".'),
      annotations: stringMap('Annotations, e.g. eks.amazonaws.com/role-arn for an IAM role.'),
    })
    .prefault({})
    .describe('The pods\' identity. The gateway calls no Kubernetes API, so no token is mounted.'),
  resources: z
    .strictObject({
      requests: resourceList('100m', '128Mi').describe('What the scheduler reserves per pod.'),
      limits: resourceList('500m', '512Mi').describe('The most a pod may use.'),
    })
    .prefault({})
    .describe('Container resources.'),
  config: chartConfigSchema.prefault({}).describe(
    'The gateway settings (gateway/src/config/schema.ts), written to config.yaml in a ConfigMap. The chart sets ' +
      `${Object.keys(CHART_OWNED_CONFIG).map((key) => `config.${key}`).join(', ')} itself: setting one fails with the value to use instead.`,
  ),
  secret: z
    .strictObject({
      existingSecret: z.string().default('').describe(`Name of a Secret holding the keys ${Object.values(SECRET_KEYS).join(', ')}; when set the chart creates no Secret.`),
      useUpstreamCredentials: z.boolean().default(false).describe(`Log in to the smarthost with the Secret's ${SECRET_KEYS.upstreamUsername} and ${SECRET_KEYS.upstreamPassword}.`),
      useAuthUsers: z.boolean().default(false).describe(`Enable SMTP AUTH with the Secret's ${SECRET_KEYS.authUsers} (user:scrypt-hash lines).`),
      upstreamUsername: z.string().default('').describe('Smarthost user name, for a Secret created by the chart (use existingSecret in production).'),
      upstreamPassword: z.string().default('').describe('Smarthost password, for a Secret created by the chart (use existingSecret in production).'),
      authUsers: z.string().default('').describe('AUTH users file content, for a Secret created by the chart.'),
    })
    .prefault({})
    .describe('Credentials, mounted as files; never put real secrets in a committed values file.'),
  tls: z
    .strictObject({
      existingSecret: z.string().default('').describe('Name of a kubernetes.io/tls Secret (e.g. from cert-manager) for STARTTLS and SMTPS; empty disables inbound TLS.'),
    })
    .prefault({})
    .describe('Inbound TLS certificate.'),
  services: z
    .strictObject({
      smtp: service('The relay listener.', ['relay']),
      submission: service('The submission and SMTPS listeners.', ['submission', 'smtps']),
    })
    .prefault({})
    .describe('The Services that expose the SMTP listeners.'),
  metrics: z
    .strictObject({
      serviceMonitor: z
        .strictObject({
          enabled: z.boolean().default(false).describe('Create a ServiceMonitor (only when the cluster has the monitoring.coreos.com/v1 API).'),
          interval: duration('30s', 'Scrape interval.'),
          scrapeTimeout: duration('10s', 'Scrape timeout.'),
          labels: stringMap('Extra labels, e.g. the release label your Prometheus selects on.'),
          relabelings: passthroughList('Relabelings applied before scraping.'),
          metricRelabelings: passthroughList('Relabelings applied to scraped samples.'),
        })
        .prefault({})
        .describe('Prometheus Operator ServiceMonitor.'),
      prometheusRule: z
        .strictObject({
          enabled: z.boolean().default(false).describe('Create a PrometheusRule with the gateway\'s alerts (only when the cluster has the monitoring.coreos.com/v1 API).'),
          labels: stringMap('Extra labels on the PrometheusRule, e.g. the release label your Prometheus selects rules by.'),
          ruleLabels: stringMap('Extra labels on every alert, e.g. team for Alertmanager routing; severity stays the chart\'s.'),
          runbookBaseUrl: z.string().regex(/^https?:\/\/\S+[^/]$/, { message: 'expected an http(s) URL without a trailing slash' }).default(`${PROJECT.home}/blob/main/docs/runbooks`).describe('Each alert\'s runbook_url is <runbookBaseUrl>/<AlertName>.md; point it at a copy of docs/runbooks you control.'),
        })
        .prefault({})
        .describe('Prometheus Operator PrometheusRule: the alerting rules, each with a runbook.'),
      grafanaDashboard: z
        .strictObject({
          enabled: z.boolean().default(false).describe('Create a ConfigMap holding the Grafana dashboard, for the Grafana sidecar to load.'),
          label: z.string().min(1).default('grafana_dashboard').describe('Label the Grafana sidecar looks for (its dashboards.label).'),
          labelValue: z.string().default('1').describe('Value of that label (its dashboards.labelValue).'),
          folder: z.string().default('').describe('Grafana folder for the dashboard, set as the folderAnnotation annotation; empty leaves it to the sidecar.'),
          folderAnnotation: z.string().min(1).default('grafana_folder').describe('Annotation the sidecar reads the folder from (its dashboards.folderAnnotation).'),
        })
        .prefault({})
        .describe('Grafana dashboard for the sidecar of the Grafana chart (kube-prometheus-stack).'),
    })
    .prefault({})
    .describe('Metrics on the ops port (a ClusterIP Service is always rendered).'),
  autoscaling: z
    .strictObject({
      enabled: z.boolean().default(false).describe('Scale with a HorizontalPodAutoscaler instead of replicaCount.'),
      minReplicas: z.number().int().min(1).default(2).describe('Fewest pods.'),
      maxReplicas: z.number().int().min(1).default(4).describe('Most pods.'),
      targetCPUUtilizationPercentage: z.number().int().min(1).max(100).default(70).describe('Average CPU utilisation to aim for.'),
      targetMemoryUtilizationPercentage: z.number().int().min(0).max(100).default(0).describe('Average memory utilisation to aim for; 0 leaves memory out.'),
      scaleDownStabilizationSeconds: seconds(300, 'How long load must stay low before pods are removed.', 3600),
    })
    .prefault({})
    .describe('HorizontalPodAutoscaler (autoscaling/v2).'),
  podDisruptionBudget: z
    .strictObject({
      enabled: z.boolean().default(false).describe('Create a PodDisruptionBudget (leave off with one replica: it would block node drains).'),
      maxUnavailable: z.union([z.number().int().min(0), z.string().regex(/^\d+%$/)]).default(1).describe('Pods that may be down at once during voluntary disruptions (a number or a percentage).'),
    })
    .prefault({})
    .describe('PodDisruptionBudget (policy/v1).'),
  topologySpread: z
    .strictObject({
      enabled: z.boolean().default(true).describe('Spread pods across zones.'),
      topologyKey: z.string().default('topology.kubernetes.io/zone').describe('Node label to spread over.'),
      maxSkew: z.number().int().min(1).default(1).describe('Largest allowed difference in pods between two zones.'),
      whenUnsatisfiable: z.enum(['ScheduleAnyway', 'DoNotSchedule']).default('ScheduleAnyway').describe('What the scheduler does when the spread cannot be kept.'),
    })
    .prefault({})
    .describe('Topology spread constraint over zones.'),
  probes: z
    .strictObject({
      startup: probe(2, 30, 'Startup probe on /healthz: holds the other probes until the gateway is up.'),
      liveness: probe(10, 3, 'Liveness probe on /healthz.'),
      readiness: probe(5, 2, 'Readiness probe on /readyz (false at once when draining).'),
    })
    .prefault({})
    .describe('Probes on the ops port.'),
  spool: z
    .strictObject({
      sizeLimit: z
        .string()
        .regex(/^[1-9]\d*(Ki|Mi|Gi)$/, { message: 'expected a size in Ki, Mi or Gi such as 1Gi' })
        .default('1Gi')
        .describe(
          `sizeLimit of the emptyDir at ${MOUNT_PATHS.spoolDir} (config.spool.dir) that holds messages too large for memory until the upstream replies. ` +
            'Must be more than config.spool.maxBytes (the chart refuses to render otherwise): past it the kubelet evicts the pod.',
        ),
    })
    .prefault({})
    .describe('The spool volume.'),
  shutdown: z
    .strictObject({
      preStopSeconds: seconds(15, 'Pause before SIGTERM so the NLB deregisters the pod first (the NLB takes 10-15 s).'),
      extraGraceSeconds: seconds(10, 'Added to preStopSeconds + config.drain.delaySeconds + config.drain.graceSeconds to give terminationGracePeriodSeconds.'),
    })
    .prefault({})
    .describe('Graceful shutdown.'),
  networkPolicy: z
    .strictObject({
      enabled: z.boolean().default(false).describe('Restrict ingress to the SMTP and ops ports.'),
      smtpFrom: passthroughList('NetworkPolicy peers allowed to reach the SMTP ports; empty allows all.'),
      metricsFrom: passthroughList(
        'NetworkPolicy peers allowed to reach the ops port; empty allows all. An NLB health-checks /readyz on this port from its own ' +
          'addresses, so with a LoadBalancer Service include them (e.g. an ipBlock of the VPC CIDR).',
      ),
    })
    .prefault({})
    .describe('NetworkPolicy for the gateway pods.'),
  canary: z
    .strictObject({
      enabled: z.boolean().default(false).describe("Run this release as a canary of canary.stableRelease: its pods join the stable release's Services, and it renders no Services, HPA, PDB, ServiceMonitor, NetworkPolicy or test of its own."),
      stableRelease: z.string().default('').describe('The stable release whose Services the canary pods join (required when canary.enabled).'),
    })
    .prefault({})
    .describe('Gradual rollout (scripts/deploy.sh rollout): a second release beside the stable one.'),
  revisionHistoryLimit: z.number().int().min(0).default(10).describe('Old ReplicaSets kept for `kubectl rollout undo`.'),
  podSecurityContext: passthroughMap('Pod securityContext fields set over the restricted defaults (non-root uid/gid 10001, fsGroup, seccomp RuntimeDefault): each key given replaces that default, the others stay.'),
  containerSecurityContext: passthroughMap('Gateway container securityContext fields set over the restricted defaults (read-only root, no privilege escalation, all capabilities dropped): each key given replaces that default, maps such as capabilities merge key by key.'),
  initContainers: passthroughList('Init containers run before the gateway starts.'),
  extraContainers: passthroughList('Containers run beside the gateway in each pod (sidecars).'),
  extraVolumes: passthroughList('Extra volumes of the pods, for extraVolumeMounts, initContainers or extraContainers.'),
  extraVolumeMounts: passthroughList('Extra volume mounts of the gateway container.'),
  extraEnvFrom: passthroughList('Extra envFrom sources of the gateway container (ConfigMaps, Secrets); SMTPGW_* keys override config.'),
  extraDeploy: z
    .array(z.union([z.record(z.string(), z.unknown()), z.string()]))
    .default([])
    .describe('Extra objects released with the chart, each a map or a YAML string, rendered through tpl (so they may use {{ .Release.Name }} or values).'),
  nodeSelector: stringMap('Node labels the pods must match.'),
  tolerations: passthroughList('Tolerations of the pods.'),
  affinity: passthroughMap('Affinity of the pods.'),
  extraEnv: passthroughList('Extra environment variables, e.g. SMTPGW_LOG__LEVEL overrides.'),
  tests: z
    .strictObject({
      image: z
        .strictObject({
          repository: z.string().min(1).default('busybox').describe('Image with sh and nc.'),
          tag: z.string().min(1).default('1.36.1').describe('Image tag.'),
          pullPolicy: pullPolicy(),
        })
        .prefault({})
        .describe('Image of the `helm test` pod.'),
    })
    .prefault({})
    .describe('The `helm test` hook that speaks SMTP to the installed Service.'),
});

/** Values as written in values.yaml or an overlay (every key optional). */
export type ChartValuesInput = z.input<typeof valuesSchema>;
/** Values with every default filled in. */
export type ChartValues = z.output<typeof valuesSchema>;
