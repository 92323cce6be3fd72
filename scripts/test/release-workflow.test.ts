/**
 * The GitHub Actions release pipeline: actionlint (pinned in scripts/install-tools.sh, with shellcheck on
 * every `run:` block) passes on it and fails on a broken copy, and the jobs run in the order a release
 * needs: tests, then image and chart, then staging, then production behind its environment's approval.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/repo';
import { ScriptSandbox, type Rule } from './helpers/stand-ins';

const ACTIONLINT = join(REPO_ROOT, '.tools/bin/actionlint');
const WORKFLOWS = join(REPO_ROOT, '.github/workflows');

type Yaml = Record<string, any>;
const load = (name: string): Yaml => parse(readFileSync(join(WORKFLOWS, name), 'utf8'));

function actionlint(cwd: string) {
  return spawnSync(ACTIONLINT, ['-no-color'], { cwd, encoding: 'utf8', timeout: 20_000 });
}

describe('actionlint', () => {
  it('finds no problem in the workflows', () => {
    const result = actionlint(REPO_ROOT);
    expect(result.error, `run 'make tools' to install actionlint`).toBeUndefined();
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('reports a broken copy (the check can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smtpgw-actionlint-'));
    try {
      // actionlint looks for the workflows of the git repository it runs in.
      spawnSync('git', ['init', '--quiet'], { cwd: dir });
      mkdirSync(join(dir, '.github'), { recursive: true });
      cpSync(WORKFLOWS, join(dir, '.github/workflows'), { recursive: true });
      const release = join(dir, '.github/workflows/release.yaml');
      writeFileSync(release, readFileSync(release, 'utf8').replace('needs: [image, chart, staging]', 'needs: [image, chart, stagign]'));
      const result = actionlint(dir);
      expect(result.status).toBe(1);
      expect(result.stdout).toMatch(/stagign/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('release.yaml', () => {
  const release = load('release.yaml');
  const jobs = release.jobs as Record<string, Yaml>;

  it('runs on version tags and by hand', () => {
    expect(release.on.push.tags).toEqual(['v*']);
    expect(release.on).toHaveProperty('workflow_dispatch');
  });

  it('runs every test first, the way CI does', () => {
    const steps = (jobs.test.steps as Yaml[]).map((s) => s.run).filter(Boolean);
    expect(steps).toContain('make setup test');
    expect(jobs.image.needs).toBe('test');
    expect(jobs.chart.needs).toBe('test');
  });

  it('builds the image from gateway/Dockerfile with the OCI label build args, tagged with the revision', () => {
    const build = (jobs.image.steps as Yaml[]).find((s) => String(s.uses).startsWith('docker/build-push-action'));
    expect(build?.with).toMatchObject({ file: 'gateway/Dockerfile', push: true, platforms: 'linux/amd64' });
    expect(build?.with['build-args']).toMatch(/VERSION=.*\nREVISION=\$\{\{ github\.sha \}\}\nSOURCE=/);
    const meta = (jobs.image.steps as Yaml[]).find((s) => s.id === 'meta');
    expect(meta?.run).toContain('git rev-parse --short=12 HEAD');
  });

  describe('re-running a release of a revision already pushed', () => {
    const step = (jobs.image.steps as Yaml[]).find((s) => s.id === 'pushed');
    const buildSteps = (jobs.image.steps as Yaml[]).filter((s) => /^docker\/(setup-buildx|build-push)-action/.test(String(s.uses)));

    /** The step's script under bash with a stand-in aws, as the runner would run it. */
    function runStep(rules: Rule[]) {
      const sandbox = new ScriptSandbox();
      try {
        const output = join(sandbox.dir, 'github-output');
        writeFileSync(output, '');
        const result = sandbox.exec('bash', ['-euo', 'pipefail', '-c', `GITHUB_OUTPUT=${output} TAG=0123456789ab\n${step?.run}`], sandbox.tree, { rules });
        return { ...result, githubOutput: readFileSync(output, 'utf8') };
      } finally {
        sandbox.dispose();
      }
    }

    it('skips the build when the tag is already in ECR (tags are immutable)', () => {
      const result = runStep([{ match: '^aws ecr describe-repositories' }, { match: '^aws ecr describe-images .*imageTag=0123456789ab' }]);
      expect(result.status, result.output).toBe(0);
      expect(result.githubOutput).toBe('image=true\n');
      expect(result.commands.some((c) => c.includes('create-repository'))).toBe(false);
      expect(buildSteps.map((s) => s.if)).toEqual(["steps.pushed.outputs.image != 'true'", "steps.pushed.outputs.image != 'true'"]);
    });

    it('creates a missing image repository, immutable, and builds', () => {
      const result = runStep([
        { match: '^aws ecr describe-repositories', exit: 254, stderr: 'RepositoryNotFoundException' },
        { match: '^aws ecr describe-images', exit: 254, stderr: 'RepositoryNotFoundException' },
      ]);
      expect(result.status, result.output).toBe(0);
      expect(result.githubOutput).toBe('image=false\n');
      expect(result.commands).toContainEqual(expect.stringMatching(/^aws ecr create-repository --repository-name smtp-gateway --image-tag-mutability IMMUTABLE/));
    });
  });

  it('packages the chart and pushes it to an OCI registry', () => {
    const script = (jobs.chart.steps as Yaml[]).map((s) => s.run ?? '').join('\n');
    expect(script).toContain('helm package charts/smtp-gateway --destination dist');
    expect(script).toMatch(/helm push "dist\/smtp-gateway-\$VERSION\.tgz" "oci:\/\//);
  });

  it('deploys staging, then production only after staging, each in its own environment', () => {
    expect(jobs.staging.uses).toBe('./.github/workflows/deploy.yaml');
    expect(jobs.staging.needs).toEqual(['image', 'chart']);
    expect(jobs.staging.with).toMatchObject({ environment: 'staging', cluster: 'smtp-gateway-staging', values: 'values/staging.yaml' });
    expect(jobs.production.uses).toBe('./.github/workflows/deploy.yaml');
    expect(jobs.production.needs).toContain('staging');
    expect(jobs.production.with).toMatchObject({ environment: 'production', cluster: 'smtp-gateway-prod', values: 'values/prod.yaml' });
  });
});

describe('deploy.yaml', () => {
  const deploy = load('deploy.yaml');
  const job = deploy.jobs.deploy as Yaml;
  const script = (job.steps as Yaml[]).map((s) => s.run ?? '').join('\n');

  it("runs in the caller's GitHub environment, where production's required reviewers approve", () => {
    expect(job.environment).toBe('${{ inputs.environment }}');
  });

  it('upgrades or installs atomically with the overlay and the image, then runs helm test', () => {
    expect(script).toMatch(/helm upgrade --install "\$RELEASE" "\$CHART" --version "\$CHART_VERSION"/);
    expect(script).toContain('--values "$VALUES"');
    expect(script).toContain('--set "image.repository=$IMAGE_REPOSITORY" --set "image.tag=$IMAGE_TAG"');
    expect(script).toContain('--atomic --wait');
    expect(script.indexOf('helm test')).toBeGreaterThan(script.indexOf('helm upgrade'));
  });
});
