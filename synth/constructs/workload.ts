/**
 * The gateway Deployment: restricted Pod Security Standard, probes on the ops
 * port, a drain-aware shutdown (preStop pause for NLB deregistration, then the
 * gateway's own SIGTERM drain), config and Secrets in one projected volume, and
 * pods rolled by a checksum whenever the config or Secret changes.
 */
import { posix } from 'node:path';
import { ApiObject, Duration, JsonPatch, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import {
  CONFIG_FILE_NAME,
  CONTAINER_PORTS,
  ENV,
  MOUNT_PATHS,
  OPS_PATHS,
  RUN_AS_GROUP,
  RUN_AS_USER,
  SECRET_KEYS,
} from '../../gateway/src/config/constants';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { GatewayConfig } from './gateway-config';
import { GatewaySecret, SECRET_CONDITIONS } from './gateway-secret';
import { imageReference } from './image-reference';
import { LISTENERS, OPS_PORT_NAME, listenerEnabled } from './listeners';
import { HPA_ENABLED, type ChartNames } from './names';
import { SecurityContextOverValues, restrictedContainerSecurity } from './pod-security';

export interface WorkloadProps {
  readonly names: ChartNames;
  readonly config: GatewayConfig;
}

const CONTAINER = '/spec/template/spec/containers/0';
const POD = '/spec/template/spec';
/** Everything the gateway reads lives under the config folder; Secrets are sub-folders of one projected volume. */
const within = (dir: string) => {
  const relative = posix.relative(MOUNT_PATHS.configDir, dir);
  if (relative.startsWith('..')) throw new Error(`${dir} must be inside ${MOUNT_PATHS.configDir} to share its projected volume`);
  return relative;
};

export class Workload extends Construct {
  readonly deployment: kplus.Deployment;

  constructor(scope: Construct, id: string, props: WorkloadProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    const { names } = props;
    const image = imageReference(helm, {
      repository: valueRef('image.repository'),
      tag: `(default .Chart.AppVersion ${valueRef('image.tag')})`,
      digest: valueRef('image.digest'),
    });
    const probe = (path: string, which: 'startup' | 'liveness' | 'readiness') =>
      kplus.Probe.fromHttpGet(path, {
        port: CONTAINER_PORTS.ops,
        periodSeconds: Duration.seconds(t.int(valueRef(`probes.${which}.periodSeconds`))),
        timeoutSeconds: Duration.seconds(t.int(valueRef(`probes.${which}.timeoutSeconds`))),
        failureThreshold: t.int(valueRef(`probes.${which}.failureThreshold`)),
      });
    // With an HPA: autoscaling.minReplicas on the first install, so it does not start with 1 pod until the
    // HPA's first sync; on an upgrade the live count (what the HPA chose), kept within min..max. Leaving
    // replicas out instead would make helm's three-way merge drop the field and reset the Deployment to 1.
    helm.define(
      'replicas',
      `{{- if ${HPA_ENABLED} }}
{{- $live := include "${helm.chartName}.liveDeployment" . | fromJson }}
{{- $current := dig "spec" "replicas" ${valueRef('autoscaling.minReplicas')} $live }}
{{- max ${valueRef('autoscaling.minReplicas')} (min ${valueRef('autoscaling.maxReplicas')} $current) }}
{{- else }}
{{- ${valueRef('replicaCount')} }}
{{- end }}`,
    );
    const checksum = (file: string) => t.str(`include (print $.Template.BasePath "/${file}") . | sha256sum`);

    this.deployment = new kplus.Deployment(this, 'deployment', {
      metadata: { name: names.fullname(), labels: names.labels() },
      select: false,
      // One new pod at a time and none taken away first: capacity never drops during a rollout.
      strategy: kplus.DeploymentStrategy.rollingUpdate({
        maxSurge: kplus.PercentOrAbsolute.absolute(1),
        maxUnavailable: kplus.PercentOrAbsolute.absolute(0),
      }),
      podMetadata: {
        labels: names.podLabels(valueRef('podLabels')),
        annotations: {
          'checksum/config': checksum(GatewayConfig.TEMPLATE),
          'checksum/secret': checksum(GatewaySecret.TEMPLATE),
          [t.splice(valueRef('podAnnotations'), { omitEmpty: true })]: '',
        },
      },
      serviceAccount: kplus.ServiceAccount.fromServiceAccountName(this, 'sa', names.serviceAccountName()),
      // The gateway calls no Kubernetes API.
      automountServiceAccountToken: false,
      securityContext: {
        ensureNonRoot: true,
        user: RUN_AS_USER,
        group: RUN_AS_GROUP,
        fsGroup: RUN_AS_GROUP,
        fsGroupChangePolicy: kplus.FsGroupChangePolicy.ON_ROOT_MISMATCH,
      },
      // preStop pause + the gateway's drain delay + in-flight grace + margin, so the kubelet never kills a draining pod.
      terminationGracePeriod: Duration.seconds(
        t.int(
          `int (ceil (addf ${valueRef('shutdown.preStopSeconds')} ${valueRef('config.drain.delaySeconds')} ${valueRef('config.drain.graceSeconds')} ${valueRef('shutdown.extraGraceSeconds')}))`,
        ),
      ),
      containers: [
        {
          name: 'gateway',
          image: t.str(image),
          portNumber: CONTAINER_PORTS.relay,
          envVariables: { [ENV.configFile]: kplus.EnvValue.fromValue(posix.join(MOUNT_PATHS.configDir, CONFIG_FILE_NAME)) },
          startup: probe(OPS_PATHS.liveness, 'startup'),
          liveness: probe(OPS_PATHS.liveness, 'liveness'),
          readiness: probe(OPS_PATHS.readiness, 'readiness'),
          lifecycle: { preStop: kplus.Handler.fromCommand(['sleep', t.str(valueRef('shutdown.preStopSeconds'))]) },
          securityContext: restrictedContainerSecurity(RUN_AS_USER, RUN_AS_GROUP),
        },
      ],
    });
    this.deployment.containers[0].mount(MOUNT_PATHS.tmpDir, kplus.Volume.fromEmptyDir(this, 'tmp', 'tmp', { sizeLimit: Size.mebibytes(64) }));

    const apiObject = ApiObject.of(this.deployment);
    helm.template(apiObject, { file: 'deployment.yaml' });
    helm.patch(
      apiObject,
      // Set here, not as a prop: cdk8s-plus drops replicas once an HPA targets the Deployment, but
      // whether the HPA exists is only known at install time.
      JsonPatch.add('/spec/replicas', t.intString(helm.include('replicas'))),
      // Selectors are immutable: name and instance only, never labels that change with a version.
      JsonPatch.replace('/spec/selector', { matchLabels: names.selectorLabels() }),
      JsonPatch.add(`${CONTAINER}/imagePullPolicy`, t.str(valueRef('image.pullPolicy'))),
      JsonPatch.replace(`${CONTAINER}/ports`, [
        ...LISTENERS.map((l) => t.when(listenerEnabled(l), { name: l.portName, containerPort: l.containerPort, protocol: 'TCP' })),
        { name: OPS_PORT_NAME, containerPort: CONTAINER_PORTS.ops, protocol: 'TCP' },
      ]),
      JsonPatch.add(`${CONTAINER}/env/-`, t.splice(valueRef('extraEnv'), { omitEmpty: true })),
      JsonPatch.add(`${CONTAINER}/resources`, t.yaml(valueRef('resources'))),
      JsonPatch.add(`${CONTAINER}/volumeMounts/-`, { name: 'config', mountPath: MOUNT_PATHS.configDir, readOnly: true }),
      JsonPatch.add(`${POD}/volumes/-`, this.projectedVolume(helm, names)),
      // Messages too large for memory wait here until the upstream replies; sized apart from /tmp.
      JsonPatch.add(`${CONTAINER}/volumeMounts/-`, { name: 'spool', mountPath: MOUNT_PATHS.spoolDir }),
      JsonPatch.add(`${POD}/volumes/-`, { name: 'spool', emptyDir: { sizeLimit: t.str(valueRef('spool.sizeLimit')) } }),
      JsonPatch.add(`${POD}/securityContext/seccompProfile`, { type: 'RuntimeDefault' }),
      JsonPatch.add('/spec/revisionHistoryLimit', t.intString(valueRef('revisionHistoryLimit'))),
      JsonPatch.add(`${POD}/initContainers`, t.yaml(valueRef('initContainers'), { omitEmpty: true })),
      JsonPatch.add(`${POD}/containers/-`, t.splice(valueRef('extraContainers'), { omitEmpty: true })),
      JsonPatch.add(`${POD}/volumes/-`, t.splice(valueRef('extraVolumes'), { omitEmpty: true })),
      JsonPatch.add(`${CONTAINER}/volumeMounts/-`, t.splice(valueRef('extraVolumeMounts'), { omitEmpty: true })),
      JsonPatch.add(`${CONTAINER}/envFrom`, t.yaml(valueRef('extraEnvFrom'), { omitEmpty: true })),
      // No <SERVICE>_PORT variables: a release named e.g. "smtpgw" would otherwise get SMTPGW_* variables
      // that the gateway reads as config overrides (ENV.overridePrefix).
      JsonPatch.add(`${POD}/enableServiceLinks`, false),
      JsonPatch.add(`${POD}/priorityClassName`, t.str(valueRef('priorityClassName'), { if: valueRef('priorityClassName') })),
      JsonPatch.add(`${POD}/imagePullSecrets`, t.yaml(valueRef('imagePullSecrets'), { omitEmpty: true })),
      JsonPatch.add(`${POD}/nodeSelector`, t.yaml(valueRef('nodeSelector'), { omitEmpty: true })),
      JsonPatch.add(`${POD}/tolerations`, t.yaml(valueRef('tolerations'), { omitEmpty: true })),
      JsonPatch.add(`${POD}/affinity`, t.yaml(valueRef('affinity'), { omitEmpty: true })),
      JsonPatch.add(
        `${POD}/topologySpreadConstraints`,
        t.when(valueRef('topologySpread.enabled'), [
          {
            maxSkew: t.int(valueRef('topologySpread.maxSkew')),
            topologyKey: t.str(valueRef('topologySpread.topologyKey')),
            whenUnsatisfiable: t.str(valueRef('topologySpread.whenUnsatisfiable')),
            labelSelector: { matchLabels: names.selectorLabels() },
          },
        ]),
      ),
    );
    // Last, over the synthesised restricted defaults: the user's fields, each replacing one default.
    const overValues = new SecurityContextOverValues(helm);
    helm.transform(apiObject, (manifest) => {
      const pod = manifest.spec.template.spec;
      pod.securityContext = t.yaml(overValues.expr(pod.securityContext, 'podSecurityContext'));
      const gateway = pod.containers[0];
      gateway.securityContext = t.yaml(overValues.expr(gateway.securityContext, 'containerSecurityContext'));
    });
  }

  /** Config, Secret and TLS certificate as one read-only tree under the config folder. */
  private projectedVolume(helm: HelmChart, names: ChartNames) {
    const t = helm.tokens;
    const secretsDir = within(MOUNT_PATHS.secretsDir);
    const tlsDir = within(MOUNT_PATHS.tlsDir);
    const secretItem = (key: string, condition: string) => t.when(condition, { key, path: posix.join(secretsDir, key) });
    return {
      name: 'config',
      projected: {
        // Owner read, group read (fsGroup): the gateway's uid and group only.
        defaultMode: 0o440,
        sources: [
          { configMap: { name: names.fullname(), items: [{ key: CONFIG_FILE_NAME, path: CONFIG_FILE_NAME }] } },
          t.when(SECRET_CONDITIONS.mounted, {
            secret: {
              name: GatewaySecret.nameRef(helm),
              items: [
                secretItem(SECRET_KEYS.upstreamUsername, SECRET_CONDITIONS.upstream),
                secretItem(SECRET_KEYS.upstreamPassword, SECRET_CONDITIONS.upstream),
                secretItem(SECRET_KEYS.authUsers, SECRET_CONDITIONS.authUsers),
              ],
            },
          }),
          t.when(valueRef('tls.existingSecret'), {
            secret: {
              name: t.str(valueRef('tls.existingSecret')),
              items: ['tls.crt', 'tls.key'].map((key) => ({ key, path: posix.join(tlsDir, key) })),
            },
          }),
        ],
      },
    };
  }
}
