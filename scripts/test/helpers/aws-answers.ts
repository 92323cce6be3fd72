/**
 * What the stand-in aws and kubectl answer in the script tests: an account, a VPC, and AWS's own
 * "not found" errors, grouped as the states an environment can be in.
 */
import type { Rule } from './stand-ins';

export const ACCOUNT = '123456789012';
export const REGISTRY = `${ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com`;
export const IMAGE = `${REGISTRY}/smtp-gateway`;
export const VPC = 'vpc-0123456789abcdef0';
/** The tag of the image the canary runs, in the promote tests. */
export const CANARY_TAG = '0123456789ab';

const identity: Rule = { match: '^aws sts get-caller-identity', stdout: ACCOUNT };
const vpcLookup: Rule = { match: '^aws eks describe-cluster .*resourcesVpcConfig', stdout: VPC };
const loginPassword: Rule = { match: '^aws ecr get-login-password', stdout: 'ecr-password' };

/** A working AWS Load Balancer Controller: its Deployment Available, its webhook Service with a ready endpoint. */
export const LBC_AVAILABLE: Rule = { match: '^kubectl .* get deployment aws-load-balancer-controller ', stdout: 'True' };
export const LBC_WEBHOOK_READY: Rule = { match: '^kubectl .* get endpointslices ', stdout: '10.0.1.17' };

/** AWS CLI's answer when a resource does not exist: exit 254 and the exception's name. */
export const notFound = (match: string, exception: string): Rule => ({
  match,
  exit: 254,
  stderr: `An error occurred (${exception}) when calling the operation: not found`,
});

/** A new AWS account: no cluster, no repository, no image. */
export const FRESH: Rule[] = [
  identity,
  notFound('^aws eks describe-cluster .*cluster\\.status', 'ResourceNotFoundException'),
  vpcLookup,
  notFound('^aws ecr describe-repositories', 'RepositoryNotFoundException'),
  loginPassword,
  notFound('^aws ecr describe-images', 'ImageNotFoundException'),
  LBC_AVAILABLE,
  LBC_WEBHOOK_READY,
];

/** A cluster and repository from an earlier deploy; this revision's image not yet pushed. */
export const EXISTING: Rule[] = [
  identity,
  { match: '^aws eks describe-cluster .*cluster\\.status', stdout: 'ACTIVE' },
  vpcLookup,
  { match: '^aws ecr describe-repositories', stdout: '{"repositories":[{"repositoryName":"smtp-gateway"}]}' },
  loginPassword,
  notFound('^aws ecr describe-images', 'ImageNotFoundException'),
  LBC_AVAILABLE,
  LBC_WEBHOOK_READY,
];

/** kubectl's answer for the stable release's Deployment replicas ('' when there is none). */
export const stableReplicas = (replicas: string): Rule => ({
  match: 'kubectl .* get deployments --selector app.kubernetes.io/instance=smtp-gateway --output jsonpath=\\{\\.items\\[0\\]\\.spec\\.replicas\\}',
  stdout: replicas,
});

/** A UTC time `hours` ago, as the deploy script records a rollout step (2026-12-03T04:40:00Z). */
export const hoursAgo = (hours: number) => new Date(Date.now() - hours * 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z');

/** kubectl's answer for the running canary: its image, rollout step and when that step started ('' for none). */
export const runningCanary = ({ tag = CANARY_TAG, step = '10', started = hoursAgo(2) } = {}): Rule => ({
  match: 'get deployments --selector app.kubernetes.io/instance=smtp-gateway-canary',
  stdout: `${IMAGE}:${tag}|${step}|${started}`,
});

/** A canary at 50% for 25 hours: past every default soak time. */
export const canaryImage: Rule = runningCanary({ step: '50', started: hoursAgo(25) });

/** The stand-in prints a rule's stdout with printf %b: keep backslashes, and newlines on one line. */
const asStandInOutput = (text: string) => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

/** kubectl's answers for a release's running pods and each one's /metrics (through the API server's pod proxy). */
export const podsOf = (release: string, metricsByPod: Record<string, string>): Rule[] => [
  {
    match: `get pods --selector app\\.kubernetes\\.io/name=smtp-gateway,app\\.kubernetes\\.io/instance=${release} `,
    stdout: Object.keys(metricsByPod).join(' '),
  },
  ...Object.entries(metricsByPod).map(([pod, text]) => ({
    match: `get --raw /api/v1/namespaces/smtp-gateway/pods/${pod}:9090/proxy/metrics$`,
    stdout: asStandInOutput(text),
  })),
];
