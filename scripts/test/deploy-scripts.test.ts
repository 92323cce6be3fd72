/**
 * The deploy scripts, run for real against stand-in aws, eksctl, kubectl, helm and docker programs that
 * record their arguments: the exact sequence of commands for a fresh and for an existing cluster, that a
 * failing step stops the script with its message, that --dry-run runs nothing, and production's guards.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/repo';
import { CANARY_TAG, EXISTING, FRESH, IMAGE, REGISTRY, VPC, canaryImage, hoursAgo, notFound, podsOf, runningCanary, stableReplicas } from './helpers/aws-answers';
import { scrapeGatewayMetrics } from './helpers/gateway-metrics';
import { ScriptSandbox, type Rule } from './helpers/stand-ins';

let box: ScriptSandbox;
beforeAll(() => {
  box = new ScriptSandbox();
});
afterAll(() => box.dispose());

/** The look-ups of the Secrets the overlays name, before each helm upgrade. */
const secretLookups = (cluster: string) =>
  ['smtp-gateway-credentials', 'smtp-gateway-tls'].map(
    (name) => `kubectl --context ${cluster} --namespace smtp-gateway get secret ${name} --output name`,
  );

/** transport ses: the look-ups before a release's helm upgrade (its Pod Identity association, the SES identity, the configuration set). */
const sesLookups = (cluster: string, release = 'smtp-gateway') => {
  const [identity, configurationSet] = cluster.endsWith('-prod') ? ['example.com', 'smtp-gateway-production'] : ['staging.example.com', 'smtp-gateway-staging'];
  return [
    `aws eks list-pod-identity-associations --cluster-name ${cluster} --region us-east-1 --namespace smtp-gateway --service-account ${release} --query associations[].associationId --output text`,
    `aws sesv2 get-email-identity --email-identity ${identity} --region us-east-1 --query VerifiedForSendingStatus --output text`,
    `aws sesv2 get-configuration-set --configuration-set-name ${configurationSet} --region us-east-1 --query ConfigurationSetName --output text`,
  ];
};

/** The committed CloudWatch dashboard put for the cluster. */
const putDashboard = (cluster: string) =>
  `aws cloudwatch put-dashboard --dashboard-name ${cluster} --dashboard-body file://${box.tree}/deploy/cloudwatch-dashboard.json --region us-east-1 --output text`;

/** The look-ups that the AWS Load Balancer Controller is ready, before a release with LoadBalancer Services. */
const controllerChecks = (cluster: string) => [
  `kubectl --context ${cluster} --namespace kube-system get deployment aws-load-balancer-controller --output jsonpath={.status.conditions[?(@.type=="Available")].status}`,
  `kubectl --context ${cluster} --namespace kube-system get endpointslices --selector kubernetes.io/service-name=aws-load-balancer-webhook-service --output jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}`,
];

/** The commands of a deploy, in order, for a cluster and repository that already exist. */
function deployCommands(env: 'staging' | 'production', revision: string): string[] {
  const cluster = env === 'staging' ? 'smtp-gateway-staging' : 'smtp-gateway-prod';
  const overlay = env === 'staging' ? 'staging' : 'prod';
  const full = box.git('rev-parse', 'HEAD');
  return [
    'aws sts get-caller-identity --query Account --output text',
    `aws eks describe-cluster --name ${cluster} --region us-east-1 --query cluster.status --output text`,
    `aws eks update-kubeconfig --name ${cluster} --region us-east-1 --alias ${cluster}`,
    `aws eks describe-cluster --name ${cluster} --region us-east-1 --query cluster.resourcesVpcConfig.vpcId --output text`,
    `helm upgrade --install aws-load-balancer-controller aws-load-balancer-controller --repo https://aws.github.io/eks-charts --version 1.14.0 --kube-context ${cluster} --namespace kube-system --set clusterName=${cluster} --set region=us-east-1 --set vpcId=${VPC} --set serviceAccount.create=true --set serviceAccount.name=aws-load-balancer-controller --wait --timeout 10m`,
    ...controllerChecks(cluster),
    'aws ecr describe-repositories --repository-names smtp-gateway --region us-east-1',
    'aws ecr get-login-password --region us-east-1',
    `docker login --username AWS --password-stdin ${REGISTRY}`,
    `aws ecr describe-images --repository-name smtp-gateway --region us-east-1 --image-ids imageTag=${revision}`,
    `docker build --file ${box.tree}/gateway/Dockerfile --platform linux/amd64 --build-arg VERSION=0.1.0 --build-arg REVISION=${full} --build-arg SOURCE=https://git.example.test/smtp-gateway --tag ${IMAGE}:${revision} ${box.tree}`,
    `docker push ${IMAGE}:${revision}`,
    ...secretLookups(cluster),
    ...sesLookups(cluster),
    `helm upgrade --install smtp-gateway ${box.tree}/charts/smtp-gateway --kube-context ${cluster} --namespace smtp-gateway --create-namespace --values ${box.tree}/values/${overlay}.yaml --set image.repository=${IMAGE} --set image.tag=${revision} --rollback-on-failure --wait --timeout 10m`,
    `helm test smtp-gateway --kube-context ${cluster} --namespace smtp-gateway --logs --timeout 5m`,
    // production runs Container Insights (eksctl/prod.yaml), so it gets the CloudWatch dashboard
    ...(env === 'production' ? [putDashboard(cluster)] : []),
    `kubectl --context ${cluster} --namespace smtp-gateway get services --selector app.kubernetes.io/instance=smtp-gateway --output jsonpath={range .items[?(@.spec.type=="LoadBalancer")]}{.metadata.name}{"\\t"}{.status.loadBalancer.ingress[*].hostname}{"\\n"}{end}`,
  ];
}

describe('deploy-aws-staging.sh', () => {
  it('on a fresh account creates the cluster, the controller, the repository, the image and the release, in order', () => {
    const result = box.run('deploy-aws-staging.sh', [], { rules: FRESH });
    expect(result.output).not.toMatch(/deploy\.sh: /);
    expect(result.status).toBe(0);
    const expected = deployCommands('staging', box.revision);
    expected.splice(2, 0, `eksctl create cluster --config-file ${box.tree}/eksctl/staging.yaml`);
    expected.splice(
      9,
      0,
      'aws ecr create-repository --repository-name smtp-gateway --region us-east-1 --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true --encryption-configuration encryptionType=AES256',
    );
    expect(result.commands).toEqual(expected);
    expect(result.stdin.trim()).toBe('ecr-password');
  });

  it('on an existing cluster and repository only updates them', () => {
    const result = box.run('deploy-aws-staging.sh', [], { rules: EXISTING });
    expect(result.status).toBe(0);
    expect(result.commands).toEqual(deployCommands('staging', box.revision));
    expect(result.output).toContain('cluster smtp-gateway-staging exists');
  });

  it('does not rebuild an image that is already in ECR (tags are immutable)', () => {
    const rules = [{ match: '^aws ecr describe-images', stdout: '{"imageDetails":[{}]}' }, ...EXISTING];
    const result = box.run('deploy-aws-staging.sh', [], { rules });
    expect(result.status).toBe(0);
    expect(result.commands.filter((c) => c.startsWith('docker build') || c.startsWith('docker push'))).toEqual([]);
    expect(result.commands).toContain(
      `helm upgrade --install smtp-gateway ${box.tree}/charts/smtp-gateway --kube-context smtp-gateway-staging --namespace smtp-gateway --create-namespace --values ${box.tree}/values/staging.yaml --set image.repository=${IMAGE} --set image.tag=${box.revision} --rollback-on-failure --wait --timeout 10m`,
    );
  });

  it('stops at a failing step with the tool message and its own, running nothing after it', () => {
    const rules = [
      { match: '^helm upgrade --install smtp-gateway ', exit: 1, stderr: 'Error: UPGRADE FAILED: context deadline exceeded' },
      ...EXISTING,
    ];
    const result = box.run('deploy-aws-staging.sh', [], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain('Error: UPGRADE FAILED: context deadline exceeded');
    expect(result.output).toContain('deploy.sh: step failed (exit 1): helm upgrade --install smtp-gateway ');
    expect(result.commands.at(-1)).toMatch(/^helm upgrade --install smtp-gateway /);
    expect(result.commands.some((c) => c.startsWith('helm test'))).toBe(false);
  });

  it('stops before the release when a Secret the overlay names is missing, saying which', () => {
    const rules = [
      { match: '^kubectl .* get secret smtp-gateway-tls ', exit: 1, stderr: 'Error from server (NotFound): secrets "smtp-gateway-tls" not found' },
      ...EXISTING,
    ];
    const result = box.run('deploy-aws-staging.sh', [], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain(
      'Secret smtp-gateway-tls, named by values/staging.yaml, does not exist in namespace smtp-gateway of smtp-gateway-staging; create it first',
    );
    expect(result.commands.at(-1)).toBe(secretLookups('smtp-gateway-staging')[1]);
  });

  it('transport ses: stops before the release when its ServiceAccount has no Pod Identity association, saying how to create it', () => {
    const rules = [{ match: '^aws eks list-pod-identity-associations ', stdout: '' }, ...EXISTING];
    const result = box.run('deploy-aws-staging.sh', [], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain(
      `ServiceAccount smtp-gateway/smtp-gateway has no EKS Pod Identity association in smtp-gateway-staging, so its pods cannot sign SES requests; create it with 'eksctl create podidentityassociation --config-file ${box.tree}/eksctl/staging.yaml'`,
    );
    expect(result.commands.at(-1)).toBe(sesLookups('smtp-gateway-staging')[0]);
  });

  it.each([
    ['not verified', { match: '^aws sesv2 get-email-identity ', stdout: 'False' }, 'is not verified for sending in us-east-1', 1],
    ['missing', notFound('^aws sesv2 get-email-identity ', 'NotFoundException'), 'does not exist in us-east-1; create and verify it', 1],
    ['configuration set missing', notFound('^aws sesv2 get-configuration-set ', 'NotFoundException'), 'SES configuration set smtp-gateway-staging (config.upstream.ses.configurationSet in values/staging.yaml) does not exist', 2],
  ])('transport ses: stops before the release when the SES side is %s', (_what, rule, message, lastLookup) => {
    const result = box.run('deploy-aws-staging.sh', [], { rules: [rule, ...EXISTING] });
    expect(result.status).toBe(1);
    expect(result.output).toContain(message);
    expect(result.commands.at(-1)).toBe(sesLookups('smtp-gateway-staging')[lastLookup]);
    expect(result.commands.some((c) => c.startsWith('helm upgrade --install smtp-gateway '))).toBe(false);
  });

  it('stops when the cluster cannot be created, before touching kubeconfig', () => {
    const rules = [{ match: '^eksctl create cluster', exit: 1, stderr: 'Error: creating CloudFormation stack: AlreadyExistsException' }, ...FRESH];
    const result = box.run('deploy-aws-staging.sh', [], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain('AlreadyExistsException');
    expect(result.commands.at(-1)).toBe(`eksctl create cluster --config-file ${box.tree}/eksctl/staging.yaml`);
  });

  it('stops when the cluster look-up fails for any reason other than "not found"', () => {
    const rules = [
      { match: '^aws eks describe-cluster', exit: 254, stderr: 'An error occurred (AccessDeniedException) when calling the DescribeCluster operation' },
      ...EXISTING,
    ];
    const result = box.run('deploy-aws-staging.sh', [], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toMatch(/could not look up cluster smtp-gateway-staging: .*AccessDeniedException/);
    expect(result.commands.some((c) => c.startsWith('eksctl'))).toBe(false);
  });

  it('refuses to start a cluster that is not ACTIVE', () => {
    const rules = [{ match: '^aws eks describe-cluster .*cluster\\.status', stdout: 'DELETING' }, ...EXISTING];
    const result = box.run('deploy-aws-staging.sh', [], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain('cluster smtp-gateway-staging is DELETING, not ACTIVE');
  });

  it('--dry-run runs nothing and prints every command of the plan', () => {
    const result = box.run('deploy-aws-staging.sh', ['--dry-run'], { rules: EXISTING });
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([]);
    const printed = result.output.split('\n');
    for (const prefix of [
      'aws sts get-caller-identity',
      'eksctl create cluster --config-file',
      'aws eks update-kubeconfig --name smtp-gateway-staging',
      'helm upgrade --install aws-load-balancer-controller',
      'aws ecr create-repository --repository-name smtp-gateway',
      'aws ecr get-login-password --region us-east-1 | docker login --username AWS --password-stdin ACCOUNT_ID.dkr.ecr.us-east-1.amazonaws.com',
      'docker build --file',
      'docker push ACCOUNT_ID.dkr.ecr.us-east-1.amazonaws.com/smtp-gateway:',
      'aws eks list-pod-identity-associations --cluster-name smtp-gateway-staging',
      'aws sesv2 get-email-identity --email-identity staging.example.com',
      'aws sesv2 get-configuration-set --configuration-set-name smtp-gateway-staging',
      'helm upgrade --install smtp-gateway ',
      'helm test smtp-gateway',
      'kubectl --context smtp-gateway-staging --namespace smtp-gateway get services',
    ]) {
      expect(printed.some((line) => line.startsWith(prefix)), `dry run prints: ${prefix}`).toBe(true);
    }
  });

  it('--dry-run prints the whole plan without aws, eksctl, kubectl, helm or docker installed', () => {
    const tools = ['aws', 'eksctl', 'kubectl', 'helm', 'docker'] as const;
    for (const script of ['deploy-aws-staging.sh', 'deploy-aws-production.sh']) {
      const result = box.run(script, ['--dry-run'], { without: [...tools] });
      expect(result.status, result.output).toBe(0);
      expect(result.calls).toEqual([]);
      expect(result.output).toContain('dry run: aws eksctl kubectl helm docker not found on PATH; a real run needs them');
      const printed = result.output.split('\n');
      for (const prefix of ['aws sts get-caller-identity', 'eksctl create cluster --config-file', 'docker build --file', 'helm upgrade --install smtp-gateway ', 'helm test smtp-gateway']) {
        expect(printed.some((line) => line.startsWith(prefix)), `${script} --dry-run prints: ${prefix}`).toBe(true);
      }
      const dashboard = printed.some((line) => line.startsWith('aws cloudwatch put-dashboard --dashboard-name smtp-gateway-prod '));
      expect(dashboard, `${script} puts the dashboard only where Container Insights runs`).toBe(script === 'deploy-aws-production.sh');
    }
  });

  it('names each missing tool and changes nothing', () => {
    const result = box.run('deploy-aws-staging.sh', [], { rules: EXISTING, without: ['kubectl', 'docker'] });
    expect(result.status).toBe(1);
    expect(result.output).toContain('missing required tool(s): kubectl docker');
    expect(result.calls).toEqual([]);
  });

  it('says so when there are no AWS credentials', () => {
    const rules = [{ match: '^aws sts', exit: 253, stderr: 'Unable to locate credentials. You can configure credentials by running "aws configure".' }];
    const result = box.run('deploy-aws-staging.sh', [], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain('Unable to locate credentials');
    expect(result.output).toContain('no usable AWS credentials');
    expect(result.calls).toHaveLength(1);
  });

  it('tags an image built from a dirty staging tree as such', () => {
    box.makeDirty();
    try {
      const result = box.run('deploy-aws-staging.sh', [], { rules: EXISTING });
      expect(result.status).toBe(0);
      expect(result.commands.find((c) => c.startsWith('docker push'))).toMatch(
        new RegExp(`^docker push ${IMAGE}:${box.revision}-dirty-\\d{14}$`),
      );
    } finally {
      box.git('checkout', '--', 'package.json');
    }
  });
});

describe('deploy-aws-production.sh', () => {
  it('refuses a work tree with uncommitted changes, before calling anything', () => {
    box.makeDirty();
    try {
      const result = box.run('deploy-aws-production.sh', ['--yes'], { rules: EXISTING });
      expect(result.status).toBe(1);
      expect(result.output).toContain('refusing to touch production from a work tree with uncommitted changes');
      expect(result.output).toContain('package.json');
      expect(result.calls).toEqual([]);
    } finally {
      box.git('checkout', '--', 'package.json');
    }
  });

  it('asks for the cluster name and stops without it', () => {
    const result = box.run('deploy-aws-production.sh', [], { rules: EXISTING, input: 'yes\n' });
    expect(result.status).toBe(1);
    expect(result.output).toContain('Type the cluster name (smtp-gateway-prod) to continue');
    expect(result.output).toContain("not confirmed (expected 'smtp-gateway-prod', got 'yes')");
    expect(result.commands).toEqual(['aws sts get-caller-identity --query Account --output text']);
  });

  it('stops when there is no answer at all (no terminal)', () => {
    const result = box.run('deploy-aws-production.sh', [], { rules: EXISTING });
    expect(result.status).toBe(1);
    expect(result.output).toContain('not confirmed');
    expect(result.calls).toHaveLength(1);
  });

  it('deploys once the cluster name is typed', () => {
    const result = box.run('deploy-aws-production.sh', [], { rules: EXISTING, input: 'smtp-gateway-prod\n' });
    expect(result.status).toBe(0);
    expect(result.commands).toEqual(deployCommands('production', box.revision));
  });

  it('deploys without asking when told --yes', () => {
    const result = box.run('deploy-aws-production.sh', ['--yes'], { rules: EXISTING });
    expect(result.status).toBe(0);
    expect(result.output).not.toContain('Type the cluster name');
    expect(result.commands).toEqual(deployCommands('production', box.revision));
  });
});

describe('rollout: a canary beside the stable release', () => {
  const stable = stableReplicas;
  const canaryRelease = (replicas: number) =>
    `helm upgrade --install smtp-gateway-canary ${box.tree}/charts/smtp-gateway --kube-context smtp-gateway-prod --namespace smtp-gateway --create-namespace --values ${box.tree}/values/prod.yaml --set image.repository=${IMAGE} --set image.tag=${box.revision} --set canary.enabled=true --set canary.stableRelease=smtp-gateway --set autoscaling.enabled=false --set replicaCount=${replicas} --rollback-on-failure --wait --timeout 10m`;
  const canaryLookup =
    'kubectl --context smtp-gateway-prod --namespace smtp-gateway get deployments --selector app.kubernetes.io/instance=smtp-gateway-canary --output jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}|{.metadata.annotations.smtp-gateway/rollout-step}|{.metadata.annotations.smtp-gateway/rollout-step-started}{end}';
  /** The annotation that records the step, with the time it was made. */
  const recordsStep = (percent: string) =>
    new RegExp(
      `^kubectl --context smtp-gateway-prod --namespace smtp-gateway annotate deployments --selector app.kubernetes.io/instance=smtp-gateway-canary --overwrite smtp-gateway/rollout-step=${percent} smtp-gateway/rollout-step-started=\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$`,
    );

  it('starts a 10% canary with the exact sequence of commands, and records the step', () => {
    const result = box.run('deploy-aws-production.sh', ['rollout', '10', '--yes'], { rules: [stable('9'), ...EXISTING] });
    expect(result.status).toBe(0);
    const all = deployCommands('production', box.revision);
    expect(result.commands.slice(0, -1)).toEqual([
      all[0],
      all[1],
      all[2],
      canaryLookup,
      'kubectl --context smtp-gateway-prod --namespace smtp-gateway get services --selector app.kubernetes.io/instance=smtp-gateway --output jsonpath={.items[*].spec.selector.app\\.kubernetes\\.io/instance}',
      ...all.slice(7, 13),
      'kubectl --context smtp-gateway-prod --namespace smtp-gateway get deployments --selector app.kubernetes.io/instance=smtp-gateway --output jsonpath={.items[0].spec.replicas}',
      ...secretLookups('smtp-gateway-prod'),
      ...sesLookups('smtp-gateway-prod', 'smtp-gateway-canary'),
      canaryRelease(1),
    ]);
    expect(result.commands.at(-1)).toMatch(recordsStep('10'));
    expect(result.output).toContain('canary share: 1 of 10 pods (10%, asked 10%)');
  });

  it.each([
    ['2', '10', 1, '1 of 3 pods (33%'],
    ['18', '10', 2, '2 of 20 pods (10%'],
    ['2', '5', 1, '1 of 3 pods (33%'],
  ])('with %s stable pods, %s%% gives %i canary pods', (stablePods, percent, canary, share) => {
    const result = box.run('deploy-aws-production.sh', ['rollout', percent, '--yes'], { rules: [stable(stablePods), ...EXISTING] });
    expect(result.status).toBe(0);
    expect(result.commands.at(-2)).toBe(canaryRelease(canary));
    expect(result.output).toContain(`canary share: ${share}`);
  });

  it('refuses to start a canary above 10 %: a larger step only grows a running canary, past its gates', () => {
    const result = box.run('deploy-aws-production.sh', ['rollout', '50', '--yes'], { rules: [stable('2'), ...EXISTING] });
    expect(result.status).toBe(1);
    expect(result.output).toContain(
      "refusing to start a canary at 50%: no canary release smtp-gateway-canary is running in smtp-gateway, and a new one starts at 10% or less so the canary gates judge it before it takes more; run 'deploy.sh production rollout 10' first",
    );
    expect(result.commands.some((c) => c.startsWith('helm'))).toBe(false);
  });

  it('takes an explicit canary size', () => {
    const result = box.run('deploy-aws-production.sh', ['rollout', '10', '--canary-replicas', '3', '--yes'], { rules: [stable('2'), ...EXISTING] });
    expect(result.status).toBe(0);
    expect(result.commands.at(-2)).toBe(canaryRelease(3));
  });

  it('refuses to start a canary while the stable Services still select by instance (an earlier chart), before building', () => {
    const rules = [{ match: 'get services --selector app.kubernetes.io/instance=smtp-gateway ', stdout: 'smtp-gateway smtp-gateway smtp-gateway' }, stable('2'), ...EXISTING];
    const result = box.run('deploy-aws-production.sh', ['rollout', '10', '--yes'], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain(
      "the Services of smtp-gateway still select pods by app.kubernetes.io/instance (made by an earlier chart), so a canary would get no traffic; upgrade the stable release once more first ('deploy.sh production deploy', see CHANGELOG.md)",
    );
    expect(result.commands.some((c) => c.startsWith('docker') || c.startsWith('helm'))).toBe(false);
  });

  it('refuses to start a canary when there is no stable release', () => {
    const result = box.run('deploy-aws-production.sh', ['rollout', '10', '--yes'], { rules: [stable(''), ...EXISTING] });
    expect(result.status).toBe(1);
    expect(result.output).toContain('the stable release smtp-gateway has no running Deployment');
    expect(result.commands.some((c) => c.startsWith('helm upgrade'))).toBe(false);
  });

  it('refuses to create a cluster: a rollout needs a deployed environment', () => {
    const rules = [notFound('^aws eks describe-cluster', 'ResourceNotFoundException'), ...EXISTING];
    const result = box.run('deploy-aws-production.sh', ['rollout', '10', '--yes'], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain("cluster smtp-gateway-prod does not exist; run 'deploy.sh production deploy' first");
    expect(result.commands.some((c) => c.startsWith('eksctl'))).toBe(false);
  });

  it('rejects a share that is not a percentage', () => {
    for (const bad of ['0', '101', 'ten', '5.5']) {
      const result = box.run('deploy-aws-production.sh', ['rollout', bad, '--yes'], { rules: EXISTING });
      expect(result.status).toBe(1);
      expect(result.output).toContain(`rollout PERCENT must be a whole number from 1 to 100, got '${bad}'`);
      expect(result.calls).toEqual([]);
    }
  });

  /** The gates' look-ups of both releases' pods and metrics, as the script makes them. */
  const metricsLookups = [
    'kubectl --context smtp-gateway-prod --namespace smtp-gateway get pods --selector app.kubernetes.io/name=smtp-gateway,app.kubernetes.io/instance=smtp-gateway --field-selector status.phase=Running --output jsonpath={.items[*].metadata.name}',
    'kubectl --context smtp-gateway-prod --namespace smtp-gateway get --raw /api/v1/namespaces/smtp-gateway/pods/smtp-gateway-a:9090/proxy/metrics',
    'kubectl --context smtp-gateway-prod --namespace smtp-gateway get --raw /api/v1/namespaces/smtp-gateway/pods/smtp-gateway-b:9090/proxy/metrics',
    'kubectl --context smtp-gateway-prod --namespace smtp-gateway get pods --selector app.kubernetes.io/name=smtp-gateway,app.kubernetes.io/instance=smtp-gateway-canary --field-selector status.phase=Running --output jsonpath={.items[*].metadata.name}',
    'kubectl --context smtp-gateway-prod --namespace smtp-gateway get --raw /api/v1/namespaces/smtp-gateway/pods/smtp-gateway-canary-a:9090/proxy/metrics',
  ];
  /** Two stable pods and one canary pod, with /metrics scraped from real gateways (see beforeAll). */
  const releases = (canaryMetrics: string): Rule[] => [
    ...podsOf('smtp-gateway', { 'smtp-gateway-a': metrics.healthy, 'smtp-gateway-b': metrics.healthy }),
    ...podsOf('smtp-gateway-canary', { 'smtp-gateway-canary-a': canaryMetrics }),
  ];
  const metrics: Record<string, string> = {};
  beforeAll(async () => {
    metrics.healthy = await scrapeGatewayMetrics({ relayed: 95, deferred: 3, rejected: 2 });
    metrics.defersMore = await scrapeGatewayMetrics({ relayed: 90, deferred: 8, rejected: 2 });
    metrics.quiet = await scrapeGatewayMetrics({ relayed: 5 });
  }, 60_000);

  describe('growing a running canary', () => {
    const grow = (args: string[], rules: Rule[]) =>
      box.run('deploy-aws-production.sh', ['rollout', '50', '--yes', ...args], { rules: [...rules, stable('2'), ...EXISTING] });
    const sameRevision = (options: Parameters<typeof runningCanary>[0] = {}) => runningCanary({ tag: box.revision, ...options });

    it('after the soak time and with metrics as good as the stable release, grows it and records the new step', () => {
      const result = grow([], [sameRevision({ started: hoursAgo(2) }), ...releases(metrics.healthy)]);
      expect(result.status, result.output).toBe(0);
      expect(result.commands.slice(3, 4 + metricsLookups.length)).toEqual([canaryLookup, ...metricsLookups]);
      expect(result.output).toMatch(/soak time: 10% for 2h00m since \S+, at least 1h00m required: ok/);
      expect(result.output).toContain('canary analysis: stable: 200 messages answered (190 relayed), 3.00% deferred, 2.00% refused');
      expect(result.output).toContain('canary analysis: canary: 100 messages answered (95 relayed), 3.00% deferred, 2.00% refused');
      expect(result.commands.at(-2)).toBe(canaryRelease(2));
      expect(result.commands.at(-1)).toMatch(recordsStep('50'));
    });

    it('refuses before the minimum soak time, saying how long to wait, before building anything', () => {
      const result = grow([], [sameRevision({ started: hoursAgo(0.25) }), ...releases(metrics.healthy)]);
      expect(result.status).toBe(1);
      expect(result.output).toMatch(/refusing to grow the canary from 10% to 50%: the canary has run at 10% for 1[45]m \(since \S+\), less than the minimum 1h00m; wait 4[56]m more, or set --min-soak/);
      expect(result.commands.at(-1)).toBe(canaryLookup);
    });

    it('takes the minimum soak time from --min-soak or CANARY_MIN_SOAK_ROLLOUT', () => {
      const rules = [sameRevision({ started: hoursAgo(0.25) }), ...releases(metrics.healthy)];
      expect(grow(['--min-soak', '10m'], rules).status).toBe(0);
      const fromEnv = box.run('deploy-aws-production.sh', ['rollout', '50', '--yes'], { rules: [...rules, stable('2'), ...EXISTING], env: { CANARY_MIN_SOAK_ROLLOUT: '30m' } });
      expect(fromEnv.status).toBe(1);
      expect(fromEnv.output).toContain('less than the minimum 30m');
    });

    it('refuses a canary that defers more than the stable release, printing both figures', () => {
      const result = grow([], [sameRevision(), ...releases(metrics.defersMore)]);
      expect(result.status).toBe(1);
      expect(result.output).toContain('canary analysis: the canary defers 8.00% of messages, the stable release 3.00%: 5.00 percentage points more, over the allowed 1');
      expect(result.output).toContain("refusing to grow the canary from 10% to 50%: the canary (smtp-gateway-canary) does worse than smtp-gateway by more than 1 percentage points (--max-ratio-increase); look at its logs, then 'deploy.sh production abort'");
      expect(result.commands.some((c) => c.startsWith('helm') || c.startsWith('docker'))).toBe(false);
    });

    it('goes on with a wider margin from --max-ratio-increase', () => {
      expect(grow(['--max-ratio-increase', '5.5'], [sameRevision(), ...releases(metrics.defersMore)]).status).toBe(0);
    });

    it('refuses with too little traffic unless --force', () => {
      const rules = [sameRevision(), ...releases(metrics.quiet)];
      const refused = grow([], rules);
      expect(refused.status).toBe(1);
      expect(refused.output).toContain('canary analysis: too little traffic to compare: the canary answered 5 messages, fewer than 100');
      expect(refused.output).toContain('refusing to grow the canary from 10% to 50%: too little traffic to judge the canary (each release must have answered at least 100 messages, --min-messages); wait for more, or pass --force');
      const forced = grow(['--force'], rules);
      expect(forced.status).toBe(0);
      expect(forced.output).toContain('going on without the comparison (--force)');
      expect(grow(['--min-messages', '5'], rules).status).toBe(0);
    });

    it('refuses when a release has no running pod to read', () => {
      const result = grow([], [sameRevision(), ...podsOf('smtp-gateway', { 'smtp-gateway-a': metrics.healthy })]);
      expect(result.status).toBe(1);
      expect(result.output).toContain('release smtp-gateway-canary has no running pods in smtp-gateway to read metrics from');
    });

    it('--dry-run runs only the look-ups of its decision and shows it', () => {
      const go = grow(['--dry-run'], [sameRevision(), ...releases(metrics.healthy)]);
      expect(go.status).toBe(0);
      expect(go.commands).toEqual([canaryLookup, ...metricsLookups]);
      expect(go.output).toContain('the canary is within 1 percentage points of the stable release');
      expect(go.output).toMatch(/^helm upgrade --install smtp-gateway-canary /m);
      const refuse = grow(['--dry-run'], [sameRevision(), ...releases(metrics.defersMore)]);
      expect(refuse.status).toBe(1);
      expect(refuse.output).toContain('refusing to grow the canary');
    });

    it('needs no gate to shrink a canary or to re-run the same step, and keeps the step time', () => {
      const shrink = box.run('deploy-aws-production.sh', ['rollout', '10', '--yes'], { rules: [sameRevision({ step: '50', started: hoursAgo(0.1) }), stable('2'), ...EXISTING] });
      expect(shrink.status).toBe(0);
      expect(shrink.commands.at(-1)).toMatch(recordsStep('10'));
      const again = box.run('deploy-aws-production.sh', ['rollout', '10', '--yes'], { rules: [sameRevision({ started: hoursAgo(0.1) }), stable('2'), ...EXISTING] });
      expect(again.status).toBe(0);
      expect(again.commands.at(-1)).toMatch(/^helm upgrade --install smtp-gateway-canary /);
    });

    it('refuses to grow a canary of another revision', () => {
      const result = grow([], [runningCanary({ tag: 'fedcba987654' }), ...releases(metrics.healthy)]);
      expect(result.status).toBe(1);
      expect(result.output).toContain(`the canary runs ${IMAGE}:fedcba987654, not this revision (${box.revision}): promote or abort it first`);
    });

    it('refuses a canary with no recorded step time unless --min-soak 0', () => {
      const rules = [sameRevision({ started: '' }), ...releases(metrics.healthy)];
      const result = grow([], rules);
      expect(result.status).toBe(1);
      expect(result.output).toContain('does not record when its step started (annotation smtp-gateway/rollout-step-started)');
      expect(grow(['--min-soak', '0'], rules).status).toBe(0);
    });
  });

  const promoteCommands = () => [
    'aws sts get-caller-identity --query Account --output text',
    'aws eks describe-cluster --name smtp-gateway-prod --region us-east-1 --query cluster.status --output text',
    'aws eks update-kubeconfig --name smtp-gateway-prod --region us-east-1 --alias smtp-gateway-prod',
    canaryLookup,
    ...metricsLookups,
    ...controllerChecks('smtp-gateway-prod'),
    ...secretLookups('smtp-gateway-prod'),
    ...sesLookups('smtp-gateway-prod'),
    `helm upgrade --install smtp-gateway ${box.tree}/charts/smtp-gateway --kube-context smtp-gateway-prod --namespace smtp-gateway --create-namespace --values ${box.tree}/values/prod.yaml --set image.repository=${IMAGE} --set image.tag=${CANARY_TAG} --rollback-on-failure --wait --timeout 10m`,
    'helm test smtp-gateway --kube-context smtp-gateway-prod --namespace smtp-gateway --logs --timeout 5m',
    'helm uninstall smtp-gateway-canary --kube-context smtp-gateway-prod --namespace smtp-gateway --wait',
  ];
  const promotable = () => [canaryImage, ...releases(metrics.healthy), ...EXISTING];

  it("promote passes the gates, moves the stable release to the canary's image, tests it, then removes the canary", () => {
    const result = box.run('deploy-aws-production.sh', ['promote', '--yes'], { rules: promotable() });
    expect(result.status, result.output).toBe(0);
    expect(result.commands.slice(0, -1)).toEqual(promoteCommands());
    expect(result.commands.at(-1)).toMatch(/^kubectl .* get services/);
    expect(result.output, result.output).toMatch(/soak time: 50% for 25h0\dm since \S+, at least 24h00m required: ok/);
  });

  it('promote refuses before 24 hours at the last step, or with CANARY_MIN_SOAK_PROMOTE', () => {
    const early = box.run('deploy-aws-production.sh', ['promote', '--yes'], { rules: [runningCanary({ step: '50', started: hoursAgo(23) }), ...promotable()] });
    expect(early.status).toBe(1);
    expect(early.output).toMatch(/refusing to promote \S+: the canary has run at 50% for 23h00m .*less than the minimum 24h00m; wait 1h00m more/);
    expect(early.commands.some((c) => c.startsWith('helm'))).toBe(false);
    const shorter = box.run('deploy-aws-production.sh', ['promote', '--yes'], {
      rules: [runningCanary({ step: '50', started: hoursAgo(23) }), ...promotable()],
      env: { CANARY_MIN_SOAK_PROMOTE: '12h' },
    });
    expect(shorter.status).toBe(0);
  });

  it('promote refuses a canary that does worse, keeping the stable release as it is', () => {
    const rules = [canaryImage, ...releases(metrics.defersMore), ...EXISTING];
    const result = box.run('deploy-aws-production.sh', ['promote', '--yes'], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain('the canary defers 8.00% of messages, the stable release 3.00%');
    expect(result.output).toContain(`refusing to promote ${IMAGE}:${CANARY_TAG}`);
    expect(result.commands.some((c) => c.startsWith('helm'))).toBe(false);
  });

  it('promote stops before helm when the AWS Load Balancer Controller is not ready, with the fix', () => {
    const rules = [{ match: 'get endpointslices', stdout: '' }, ...promotable()];
    const result = box.run('deploy-aws-production.sh', ['promote', '--yes'], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain(
      "the AWS Load Balancer Controller's webhook Service aws-load-balancer-webhook-service has no ready endpoints: the API server cannot admit the chart's Services and the LoadBalancer Services of values/prod.yaml would never get an address",
    );
    expect(result.output).toContain("run 'deploy.sh production deploy' (it installs the controller)");
    expect(result.commands.some((c) => c.startsWith('helm'))).toBe(false);
  });

  it('rollout 100 is promote', () => {
    const result = box.run('deploy-aws-production.sh', ['rollout', '100', '--yes'], { rules: promotable() });
    expect(result.status).toBe(0);
    expect(result.commands.slice(0, -1)).toEqual(promoteCommands());
  });

  it('promote keeps the canary when the stable release fails its tests', () => {
    const rules = [{ match: '^helm test', exit: 1, stderr: 'Error: pod smtp-gateway-test failed' }, ...promotable()];
    const result = box.run('deploy-aws-production.sh', ['promote', '--yes'], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain('Error: pod smtp-gateway-test failed');
    expect(result.commands.some((c) => c.startsWith('helm uninstall'))).toBe(false);
  });

  it('promote without a canary says how to start one', () => {
    const result = box.run('deploy-aws-production.sh', ['promote', '--yes'], { rules: EXISTING });
    expect(result.status).toBe(1);
    expect(result.output).toContain("no canary release smtp-gateway-canary is running in smtp-gateway; start one with 'deploy.sh production rollout 10'");
  });

  it.each([
    [['--max-ratio-increase', 'ten'], {}, "--max-ratio-increase (or CANARY_MAX_RATIO_INCREASE) must be a number of percentage points such as 1 or 0.5, got 'ten'"],
    [['--min-messages', '1e3'], {}, "--min-messages (or CANARY_MIN_MESSAGES) must be a whole number, got '1e3'"],
    [['--min-soak', '1w'], {}, "--min-soak must be a duration such as 90m, 1h, 24h or 0, got '1w'"],
    [[], { CANARY_MIN_SOAK_PROMOTE: 'a day' }, "CANARY_MIN_SOAK_PROMOTE must be a duration such as 90m, 1h, 24h or 0, got 'a day'"],
    [['--min-soak'], {}, '--min-soak needs a value'],
  ])('rejects the gate setting %j %j before calling anything', (args, env, message) => {
    const result = box.run('deploy-aws-production.sh', ['promote', '--yes', ...args], { rules: promotable(), env });
    expect(result.status).toBe(1);
    expect(result.output).toContain(message);
    expect(result.calls).toEqual([]);
  });

  it('abort removes the canary without asking (it is the way back), even from a dirty tree', () => {
    box.makeDirty();
    try {
      const result = box.run('deploy-aws-production.sh', ['abort'], { rules: EXISTING });
      expect(result.status).toBe(0);
      expect(result.commands).toEqual([
        'aws sts get-caller-identity --query Account --output text',
        'aws eks describe-cluster --name smtp-gateway-prod --region us-east-1 --query cluster.status --output text',
        'aws eks update-kubeconfig --name smtp-gateway-prod --region us-east-1 --alias smtp-gateway-prod',
        'helm uninstall smtp-gateway-canary --kube-context smtp-gateway-prod --namespace smtp-gateway --ignore-not-found --wait',
      ]);
    } finally {
      box.git('checkout', '--', 'package.json');
    }
  });
});

describe('the AWS Load Balancer Controller must be ready before a release with load balancers', () => {
  it.each([
    [
      'not installed',
      { match: 'get deployment aws-load-balancer-controller', exit: 1, stderr: 'Error from server (NotFound): deployments.apps "aws-load-balancer-controller" not found' },
      'the AWS Load Balancer Controller is not installed (deployment aws-load-balancer-controller in namespace kube-system of smtp-gateway-staging not found)',
    ],
    [
      'not Available',
      { match: 'get deployment aws-load-balancer-controller', stdout: 'False' },
      "the AWS Load Balancer Controller is not Available (deployment aws-load-balancer-controller in namespace kube-system of smtp-gateway-staging: Available='False')",
    ],
    [
      'without webhook endpoints',
      { match: 'get endpointslices', stdout: '' },
      "the AWS Load Balancer Controller's webhook Service aws-load-balancer-webhook-service has no ready endpoints",
    ],
  ])('deploy stops when it is %s, before building or releasing anything, and says how to fix it', (_state, rule, message) => {
    const result = box.run('deploy-aws-staging.sh', [], { rules: [rule, ...EXISTING] });
    expect(result.status).toBe(1);
    expect(result.output).toContain(message);
    expect(result.output).toContain('would never get an address (helm --wait does not wait for one)');
    expect(result.output).toContain("see 'kubectl --context smtp-gateway-staging --namespace kube-system describe deployment aws-load-balancer-controller' and its logs");
    expect(result.commands.at(-1)).toMatch(/^kubectl --context smtp-gateway-staging --namespace kube-system get /);
    expect(result.commands.some((c) => c.startsWith('docker') || c.startsWith('helm upgrade --install smtp-gateway '))).toBe(false);
  });
});

describe('cleanup scripts', () => {
  const cleanupCommands = (cluster: string) => [
    'aws sts get-caller-identity --query Account --output text',
    `aws eks describe-cluster --name ${cluster} --region us-east-1 --query cluster.status --output text`,
    `aws eks update-kubeconfig --name ${cluster} --region us-east-1 --alias ${cluster}`,
    `helm uninstall smtp-gateway-canary --kube-context ${cluster} --namespace smtp-gateway --ignore-not-found --wait --timeout 10m`,
    `helm uninstall smtp-gateway --kube-context ${cluster} --namespace smtp-gateway --ignore-not-found --wait --timeout 10m`,
    // production's dashboard (Container Insights) goes with its cluster
    ...(cluster === 'smtp-gateway-prod'
      ? [
          `aws cloudwatch get-dashboard --dashboard-name ${cluster} --region us-east-1 --query DashboardName --output text`,
          `aws cloudwatch delete-dashboards --dashboard-names ${cluster} --region us-east-1`,
        ]
      : []),
    `eksctl delete cluster --name ${cluster} --region us-east-1 --wait`,
  ];

  it.each([
    ['cleanup-aws-staging.sh', 'smtp-gateway-staging'],
    ['cleanup-aws-production.sh', 'smtp-gateway-prod'],
  ])('%s removes the releases (so the controller deletes the NLBs), then the cluster', (script, cluster) => {
    const result = box.run(script, [], { rules: EXISTING, input: `${cluster}\n` });
    expect(result.status).toBe(0);
    expect(result.commands).toEqual(cleanupCommands(cluster));
  });

  it('asks first, and deletes nothing unconfirmed', () => {
    const result = box.run('cleanup-aws-staging.sh', [], { rules: EXISTING });
    expect(result.status).toBe(1);
    expect(result.output).toContain('about to delete the smtp-gateway releases and the cluster smtp-gateway-staging with its VPC');
    expect(result.commands).toEqual(['aws sts get-caller-identity --query Account --output text']);
  });

  it('a production cleanup whose dashboard is already gone deletes the cluster all the same', () => {
    const rules = [notFound('^aws cloudwatch get-dashboard', 'ResourceNotFound'), ...EXISTING];
    const result = box.run('cleanup-aws-production.sh', ['--yes'], { rules });
    expect(result.status, result.output).toBe(0);
    expect(result.output).toContain('no CloudWatch dashboard smtp-gateway-prod to delete');
    expect(result.commands.some((c) => c.startsWith('aws cloudwatch delete-dashboards'))).toBe(false);
    expect(result.commands.at(-1)).toBe('eksctl delete cluster --name smtp-gateway-prod --region us-east-1 --wait');
  });

  it('--keep-cluster removes only the releases', () => {
    const result = box.run('cleanup-aws-staging.sh', ['--keep-cluster', '--yes'], { rules: EXISTING });
    expect(result.status).toBe(0);
    expect(result.commands).toEqual(cleanupCommands('smtp-gateway-staging').slice(0, -1));
  });

  it('is done when the cluster is already gone', () => {
    const rules = [notFound('^aws eks describe-cluster', 'ResourceNotFoundException'), ...EXISTING];
    const result = box.run('cleanup-aws-staging.sh', ['--yes'], { rules });
    expect(result.status).toBe(0);
    expect(result.output).toContain('cluster smtp-gateway-staging does not exist; nothing to delete');
    expect(result.calls).toHaveLength(2);
  });

  it('stops if a release cannot be removed, keeping the cluster', () => {
    const rules = [{ match: '^helm uninstall smtp-gateway ', exit: 1, stderr: 'Error: timed out waiting for the condition' }, ...EXISTING];
    const result = box.run('cleanup-aws-staging.sh', ['--yes'], { rules });
    expect(result.status).toBe(1);
    expect(result.output).toContain('timed out waiting for the condition');
    expect(result.commands.some((c) => c.startsWith('eksctl'))).toBe(false);
  });

  it('--dry-run runs nothing', () => {
    const result = box.run('cleanup-aws-production.sh', ['--dry-run'], { rules: EXISTING });
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([]);
    expect(result.output).toContain('eksctl delete cluster --name smtp-gateway-prod --region us-east-1 --wait');
  });

  it('--dry-run works without aws, eksctl or helm installed', () => {
    const result = box.run('cleanup-aws-staging.sh', ['--dry-run'], { without: ['aws', 'eksctl', 'kubectl', 'helm', 'docker'] });
    expect(result.status, result.output).toBe(0);
    expect(result.calls).toEqual([]);
    expect(result.output).toContain('a real run needs them');
    expect(result.output).toContain('eksctl delete cluster --name smtp-gateway-staging --region us-east-1 --wait');
  });
});

describe('every script', () => {
  it.each([
    'deploy.sh',
    'deploy-aws-staging.sh',
    'deploy-aws-production.sh',
    'cleanup.sh',
    'cleanup-aws-staging.sh',
    'cleanup-aws-production.sh',
  ])('%s --help prints its usage and runs nothing; the script runs with set -euo pipefail', (script) => {
    expect(readFileSync(join(box.tree, 'scripts', script), 'utf8')).toMatch(/^set -euo pipefail$/m);
    const result = box.run(script, ['--help']);
    expect(result.status).toBe(0);
    expect(result.output).toMatch(/^Usage: /m);
    expect(result.output).toContain('--dry-run');
    expect(result.calls).toEqual([]);
  });

  it.each([
    ['deploy-aws-staging.sh', 'deploy.sh'],
    ['deploy-aws-production.sh', 'deploy.sh'],
    ['cleanup-aws-staging.sh', 'cleanup.sh'],
    ['cleanup-aws-production.sh', 'cleanup.sh'],
  ])('%s --help gives the same arguments as %s, without ENVIRONMENT', (wrapper, script) => {
    const usage = (output: string) => /^Usage: \S+ (.*?)(\s{2,}\(|$)/m.exec(output)?.[1];
    const own = usage(box.run(wrapper, ['--help']).output);
    expect(own).toBeDefined();
    expect(`ENVIRONMENT ${own}`).toBe(usage(box.run(script, ['--help']).output));
  });

  it.each([
    [['deploy.sh'], 'missing ENVIRONMENT: staging or production'],
    [['deploy.sh', 'qa'], "unknown environment 'qa': expected 'staging' or 'production'"],
    [['deploy.sh', 'staging', 'destroy'], "unknown command 'destroy'"],
    [['deploy.sh', 'staging', '--forse'], "unknown option '--forse'"],
    [['deploy.sh', 'staging', 'rollout'], "rollout needs PERCENT, e.g. 'deploy.sh staging rollout 10'"],
    [['cleanup.sh'], 'expected one ENVIRONMENT (staging or production)'],
  ])('%j fails with a clear message', ([script, ...args], message) => {
    const result = box.run(script, args);
    expect(result.status).toBe(1);
    expect(result.output).toContain(message);
    expect(result.calls).toEqual([]);
  });

  it.each([
    ['kubeconfig-staging', 'smtp-gateway-staging'],
    ['kubeconfig-prod', 'smtp-gateway-prod'],
  ])('make %s switches kubectl to %s', (target, cluster) => {
    const result = box.exec('make', ['--silent', target], REPO_ROOT, { systemPath: true });
    expect(result.status, result.output).toBe(0);
    expect(result.commands).toEqual([`aws eks update-kubeconfig --name ${cluster} --region us-east-1 --alias ${cluster}`]);
  });

  it('kubeconfig switches kubectl to the environment', () => {
    const result = box.run('deploy-aws-production.sh', ['kubeconfig']);
    expect(result.status).toBe(0);
    expect(result.commands).toEqual(['aws eks update-kubeconfig --name smtp-gateway-prod --region us-east-1 --alias smtp-gateway-prod']);
  });
});
