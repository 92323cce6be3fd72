/**
 * The test cluster's scripts without a cluster (make test-cluster runs them for real): versions read
 * from the one versions file, the cache folders keyed by version, and clear errors for bad arguments.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/repo';

const exec = promisify(execFile);
const script = (name: string) => join(REPO_ROOT, 'scripts', name);

async function fails(name: string, args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await exec(script(name), args);
  } catch (error) {
    const failure = error as { code: number; stderr: string };
    return { code: failure.code, stderr: failure.stderr };
  }
  throw new Error(`${name} ${args.join(' ')} succeeded`);
}

const versions = Object.fromEntries(
  readFileSync(script('cluster-versions.env'), 'utf8')
    .split('\n')
    .map((line) => /^([A-Z_]+)=(\S+)$/.exec(line))
    .filter((match) => match !== null)
    .map((match) => [match[1], match[2]]),
);

describe('the test cluster scripts', () => {
  it('pin exact versions in scripts/cluster-versions.env', () => {
    expect(versions.KUBERNETES_VERSION).toMatch(/^v1\.\d+\.\d+$/);
    expect(versions.ETCD_VERSION).toMatch(/^v3\.\d+\.\d+$/);
    expect(versions.COREDNS_VERSION).toMatch(/^v1\.\d+\.\d+$/);
    expect(versions.NPM_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
    expect(versions.KWOK_VERSION).toMatch(/^v0\.\d+\.\d+$/);
  });

  it('cache the binaries in .tools folders keyed by those versions', async () => {
    const { stdout } = await exec(script('install-cluster-tools.sh'), ['--print-dirs']);
    expect(stdout.trim().split('\n')).toEqual([
      join(REPO_ROOT, `.tools/k8s-${versions.KUBERNETES_VERSION}/bin`),
      join(REPO_ROOT, `.tools/etcd-${versions.ETCD_VERSION}/bin`),
      join(REPO_ROOT, `.tools/coredns-${versions.COREDNS_VERSION}/bin`),
      join(REPO_ROOT, `.tools/kwok-${versions.KWOK_VERSION}/bin`),
    ]);
  });

  it('print the cluster addresses, none of them loopback', async () => {
    const { stdout } = await exec(script('test-cluster.sh'), ['env']);
    const env = Object.fromEntries(stdout.trim().split('\n').map((line) => line.split(/=(.*)/s).slice(0, 2)));
    expect(env.KUBECTL).toBe(join(REPO_ROOT, `.tools/k8s-${versions.KUBERNETES_VERSION}/bin/kubectl`));
    for (const key of ['NODE_IP', 'POD_GATEWAY']) expect(env[key], key).toMatch(/^(10|172)\.\d+\.\d+\.\d+$/);
  });

  it('refuse unknown commands and missing arguments, naming them', async () => {
    expect(await fails('test-cluster.sh', ['start'])).toMatchObject({ code: 1, stderr: expect.stringContaining("unknown command 'start'") });
    expect(await fails('test-cluster.sh', ['import', 'only-one'])).toMatchObject({ code: 1, stderr: expect.stringContaining('import needs IMAGE.oci.tar and NAME') });
    expect(await fails('test-cluster.sh', ['fake-node', 'start'])).toMatchObject({ code: 1, stderr: expect.stringContaining("fake-node needs add or remove, got 'start'") });
    expect(await fails('install-cluster-tools.sh', ['--fast'])).toMatchObject({ code: 1, stderr: expect.stringContaining("unknown argument '--fast'") });
    expect(await fails('build-cluster-image.sh', ['only-a-tag'])).toMatchObject({ code: 1, stderr: expect.stringContaining('expected TAG and OUT.oci.tar, got 1 argument(s)') });
  });
});
