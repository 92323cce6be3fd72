/**
 * The `helm test` hook: a pod that speaks SMTP to the installed Service
 * (greeting, EHLO, NOOP, QUIT) and fails unless each reply has the right code.
 * It carries no selector labels, so no Service ever routes mail to it. It stays after the test for its
 * logs; a pre-delete hook of the same name removes it on `helm uninstall`, which leaves hooks behind.
 */
import { ApiObject, JsonPatch, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmChart } from '../helm/helm-chart';
import { valueRef } from '../values/ref';
import { imageReference } from './image-reference';
import { LISTENERS, listenerEnabled, servicePort } from './listeners';
import { NOT_CANARY, type ChartNames } from './names';
import { restrictedContainerSecurity } from './pod-security';

/**
 * Needs only POSIX sh, nc, grep and tr (busybox has them). Reads SMTP_ENDPOINT=host:port and
 * SMTP_PROXY_HEADER=true|false: with PROXY protocol on, the pod is inside the gateway's trusted networks
 * (the VPC) like the NLB, so it must open with a header too (v1 UNKNOWN: "use my own address").
 */
export const SMTP_TEST_SCRIPT = `set -eu
host="\${SMTP_ENDPOINT%:*}"
port="\${SMTP_ENDPOINT##*:}"
echo "helm test: talking SMTP to $host:$port"
proxy_header() { if [ "\${SMTP_PROXY_HEADER:-false}" = true ]; then printf 'PROXY UNKNOWN\\r\\n'; fi; }
reply=$( { proxy_header; sleep 2; printf 'EHLO helm-test.invalid\\r\\n'; sleep 1; printf 'NOOP\\r\\n'; sleep 1; printf 'QUIT\\r\\n'; sleep 1; } | nc -w 10 "$host" "$port" | tr -d '\\r' ) || true
printf '%s\\n' "$reply"
fail() { echo "helm test: FAILED: $1 from $host:$port" >&2; exit 1; }
printf '%s\\n' "$reply" | head -n 1 | grep -q '^220[ -]' || fail 'expected the 220 greeting'
[ "$(printf '%s\\n' "$reply" | grep -c '^250 ')" -ge 2 ] || fail 'expected 250 replies to EHLO and NOOP'
printf '%s\\n' "$reply" | tail -n 1 | grep -q '^221[ -]' || fail 'expected 221 to QUIT'
echo "helm test: OK, $host:$port speaks SMTP"
`;

/** The component label of the test pod (the NetworkPolicy lets it in). */
export const TEST_COMPONENT = 'test';

export interface TestHookProps {
  readonly names: ChartNames;
}

export class TestHook extends Construct {
  constructor(scope: Construct, id: string, props: TestHookProps) {
    super(scope, id);
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    // The first published plain-text listener (SMTPS would need TLS before EHLO).
    const candidates = LISTENERS.filter((l) => l.name !== 'smtps').map((l) => ({
      listener: l,
      condition: `and ${valueRef(`services.${l.group}.enabled`)} ${listenerEnabled(l)}`,
    }));
    const branches = candidates.map(
      ({ listener, condition }, i) =>
        `{{- ${i === 0 ? 'if' : 'else if'} ${condition} }}\n` +
        `{{- printf "%s.%s.svc:%d" (include "${helm.chartName}.componentName" (dict "root" . "component" "${listener.group}")) .Release.Namespace (int ${servicePort(listener)}) }}`,
    );
    helm.define('testEndpoint', `${branches.join('\n')}\n{{- end }}`);

    const condition = `and (${NOT_CANARY}) (or ${candidates.map((c) => `(${c.condition})`).join(' ')})`;
    // Not hook-succeeded: helm deletes the pod before `helm test --logs` reads its logs, and the command
    // fails although the test passed (https://github.com/helm/helm/issues/9098). The pod stays, passed
    // or failed, for its logs, and the next `helm test` replaces it.
    this.hookPod('pod', props.names, 'tests/test-smtp.yaml', condition, {
      annotations: { 'helm.sh/hook': 'test', 'helm.sh/hook-delete-policy': 'before-hook-creation' },
      command: ['sh', '-c', SMTP_TEST_SCRIPT],
      env: {
        SMTP_ENDPOINT: kplus.EnvValue.fromValue(t.str(helm.include('testEndpoint'))),
        SMTP_PROXY_HEADER: kplus.EnvValue.fromValue(t.str(valueRef('config.proxyProtocol.enabled'))),
      },
    });
    // helm uninstall keeps hooks (https://github.com/helm/helm/issues/9206), so the kept test pod would
    // outlive its release. This pre-delete hook has the test pod's name: before-hook-creation makes helm
    // delete the kept pod first; it then exits at once and hook-succeeded removes it too.
    this.hookPod('cleanup', props.names, 'tests/test-smtp-cleanup.yaml', condition, {
      annotations: { 'helm.sh/hook': 'pre-delete', 'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded' },
      command: ['sh', '-c', 'echo "helm uninstall: the helm test pod is removed"'],
      env: {},
    });
  }

  private hookPod(id: string, names: ChartNames, file: string, condition: string, spec: HookPodSpec): void {
    const helm = HelmChart.of(this);
    const t = helm.tokens;
    const pod = new kplus.Pod(this, id, {
      metadata: {
        name: names.component('test'),
        // The instance label without the name label: found with its release, never selected by a Service.
        labels: names.commonLabels({ 'app.kubernetes.io/instance': t.str('.Release.Name'), 'app.kubernetes.io/component': TEST_COMPONENT }),
        annotations: spec.annotations,
      },
      restartPolicy: kplus.RestartPolicy.NEVER,
      automountServiceAccountToken: false,
      securityContext: { ensureNonRoot: true, user: 65534, group: 65534 },
      containers: [
        {
          name: 'smtp',
          image: t.str(imageReference(helm, { repository: valueRef('tests.image.repository'), tag: valueRef('tests.image.tag') })),
          command: spec.command,
          envVariables: spec.env,
          resources: {
            cpu: { request: kplus.Cpu.millis(10), limit: kplus.Cpu.millis(100) },
            memory: { request: Size.mebibytes(16), limit: Size.mebibytes(32) },
          },
          securityContext: restrictedContainerSecurity(65534, 65534),
        },
      ],
    });
    const apiObject = ApiObject.of(pod);
    helm.template(apiObject, { file, if: condition });
    helm.patch(
      apiObject,
      JsonPatch.add('/spec/containers/0/imagePullPolicy', t.str(valueRef('tests.image.pullPolicy'))),
      JsonPatch.add('/spec/securityContext/seccompProfile', { type: 'RuntimeDefault' }),
      // cdk8s-plus sets it even without an fsGroup, where it means nothing.
      JsonPatch.remove('/spec/securityContext/fsGroupChangePolicy'),
    );
  }
}

/** What differs between the chart's two hook pods. */
interface HookPodSpec {
  readonly annotations: Record<string, string>;
  readonly command: string[];
  readonly env: Record<string, kplus.EnvValue>;
}
