/**
 * The deploy scripts, run for real against stand-in aws, eksctl, kubectl, helm and docker programs that
 * record their arguments: the exact sequence of commands for a fresh and for an existing cluster, that a
 * failing step stops the script with its message, that --dry-run runs nothing, and production's guards.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/repo';
import { CANARY_TAG, EXISTING, FRESH, IMAGE, REGISTRY, VPC, canaryImage, notFound, stableReplicas } from './helpers/aws-answers';
import { ScriptSandbox } from './helpers/stand-ins';

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

/** The committed CloudWatch dashboard put for the cluster. */
const putDashboard = (cluster: string) =>
  `aws cloudwatch put-dashboard --dashboard-name ${cluster} --dashboard-body file://${box.tree}/deploy/cloudwatch-dashboard.json --region us-east-1 --output text`;

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
    'aws ecr describe-repositories --repository-names smtp-gateway --region us-east-1',
    'aws ecr get-login-password --region us-east-1',
    `docker login --username AWS --password-stdin ${REGISTRY}`,
    `aws ecr describe-images --repository-name smtp-gateway --region us-east-1 --image-ids imageTag=${revision}`,
    `docker build --file ${box.tree}/gateway/Dockerfile --platform linux/amd64 --build-arg VERSION=0.1.0 --build-arg REVISION=${full} --build-arg SOURCE=https://git.example.test/smtp-gateway --tag ${IMAGE}:${revision} ${box.tree}`,
    `docker push ${IMAGE}:${revision}`,
    ...secretLookups(cluster),
    `helm upgrade --install smtp-gateway ${box.tree}/charts/smtp-gateway --kube-context ${cluster} --namespace smtp-gateway --create-namespace --values ${box.tree}/values/${overlay}.yaml --set image.repository=${IMAGE} --set image.tag=${revision} --atomic --wait --timeout 10m`,
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
      7,
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
      `helm upgrade --install smtp-gateway ${box.tree}/charts/smtp-gateway --kube-context smtp-gateway-staging --namespace smtp-gateway --create-namespace --values ${box.tree}/values/staging.yaml --set image.repository=${IMAGE} --set image.tag=${box.revision} --atomic --wait --timeout 10m`,
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
    `helm upgrade --install smtp-gateway-canary ${box.tree}/charts/smtp-gateway --kube-context smtp-gateway-prod --namespace smtp-gateway --create-namespace --values ${box.tree}/values/prod.yaml --set image.repository=${IMAGE} --set image.tag=${box.revision} --set canary.enabled=true --set canary.stableRelease=smtp-gateway --set autoscaling.enabled=false --set replicaCount=${replicas} --atomic --wait --timeout 10m`;

  it('starts a 10% canary with the exact sequence of commands', () => {
    const result = box.run('deploy-aws-production.sh', ['rollout', '10', '--yes'], { rules: [stable('9'), ...EXISTING] });
    expect(result.status).toBe(0);
    const all = deployCommands('production', box.revision);
    expect(result.commands).toEqual([
      all[0],
      all[1],
      all[2],
      ...all.slice(5, 11),
      'kubectl --context smtp-gateway-prod --namespace smtp-gateway get deployments --selector app.kubernetes.io/instance=smtp-gateway --output jsonpath={.items[0].spec.replicas}',
      ...secretLookups('smtp-gateway-prod'),
      canaryRelease(1),
    ]);
    expect(result.output).toContain('canary share: 1 of 10 pods (10%, asked 10%)');
  });

  it.each([
    ['2', '10', 1, '1 of 3 pods (33%'],
    ['18', '10', 2, '2 of 20 pods (10%'],
    ['2', '50', 2, '2 of 4 pods (50%'],
    ['4', '50', 4, '4 of 8 pods (50%'],
  ])('with %s stable pods, %s%% gives %i canary pods', (stablePods, percent, canary, share) => {
    const result = box.run('deploy-aws-production.sh', ['rollout', percent, '--yes'], { rules: [stable(stablePods), ...EXISTING] });
    expect(result.status).toBe(0);
    expect(result.commands.at(-1)).toBe(canaryRelease(canary));
    expect(result.output).toContain(`canary share: ${share}`);
  });

  it('takes an explicit canary size', () => {
    const result = box.run('deploy-aws-production.sh', ['rollout', '10', '--canary-replicas', '3', '--yes'], { rules: [stable('2'), ...EXISTING] });
    expect(result.status).toBe(0);
    expect(result.commands.at(-1)).toBe(canaryRelease(3));
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

  const promoteCommands = () => [
    'aws sts get-caller-identity --query Account --output text',
    'aws eks describe-cluster --name smtp-gateway-prod --region us-east-1 --query cluster.status --output text',
    'aws eks update-kubeconfig --name smtp-gateway-prod --region us-east-1 --alias smtp-gateway-prod',
    'kubectl --context smtp-gateway-prod --namespace smtp-gateway get deployments --selector app.kubernetes.io/instance=smtp-gateway-canary --output jsonpath={.items[0].spec.template.spec.containers[0].image}',
    ...secretLookups('smtp-gateway-prod'),
    `helm upgrade --install smtp-gateway ${box.tree}/charts/smtp-gateway --kube-context smtp-gateway-prod --namespace smtp-gateway --create-namespace --values ${box.tree}/values/prod.yaml --set image.repository=${IMAGE} --set image.tag=${CANARY_TAG} --atomic --wait --timeout 10m`,
    'helm test smtp-gateway --kube-context smtp-gateway-prod --namespace smtp-gateway --logs --timeout 5m',
    'helm uninstall smtp-gateway-canary --kube-context smtp-gateway-prod --namespace smtp-gateway --wait',
  ];

  it("promote moves the stable release to the canary's image, tests it, then removes the canary", () => {
    const result = box.run('deploy-aws-production.sh', ['promote', '--yes'], { rules: [canaryImage, ...EXISTING] });
    expect(result.status).toBe(0);
    expect(result.commands.slice(0, -1)).toEqual(promoteCommands());
    expect(result.commands.at(-1)).toMatch(/^kubectl .* get services/);
  });

  it('rollout 100 is promote', () => {
    const result = box.run('deploy-aws-production.sh', ['rollout', '100', '--yes'], { rules: [canaryImage, ...EXISTING] });
    expect(result.status).toBe(0);
    expect(result.commands.slice(0, -1)).toEqual(promoteCommands());
  });

  it('promote keeps the canary when the stable release fails its tests', () => {
    const rules = [{ match: '^helm test', exit: 1, stderr: 'Error: pod smtp-gateway-test failed' }, canaryImage, ...EXISTING];
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
    [['deploy.sh', 'staging', '--force'], "unknown option '--force'"],
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
