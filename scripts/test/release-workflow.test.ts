/**
 * The GitHub Actions release pipeline: actionlint (pinned in scripts/install-tools.sh, with shellcheck on
 * every `run:` block) passes on it and fails on a broken copy; every action is pinned to a commit; the
 * jobs run in the order a release needs: the tag checked against the versions, tests, then image (with
 * SBOM and build provenance) and chart, then staging, then production behind its environment's approval.
 * The version check itself (scripts/check-release-version.sh) runs here against real files.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/repo';
import { ScriptSandbox, type Rule } from './helpers/stand-ins';
import { toolVersions } from './helpers/tool-versions';

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

describe('every workflow', () => {
  it.each(['release.yaml', 'deploy.yaml'])('%s pins each action to a full commit, naming its release in a comment', (name) => {
    const uses = readFileSync(join(WORKFLOWS, name), 'utf8')
      .split('\n')
      .filter((line) => /^\s+(- )?uses: /.test(line));
    expect(uses.length).toBeGreaterThan(0);
    for (const line of uses) {
      const use = /uses: (\S+)(.*)$/.exec(line)!;
      if (use[1].startsWith('./')) continue; // a workflow of this repository
      expect(use[1], line).toMatch(/^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/);
      expect(use[2], line).toMatch(/^ {2}# v\d+\.\d+\.\d+$/);
    }
  });

  it('uses one commit per action across the workflows', () => {
    const pins = new Map<string, Set<string>>();
    for (const name of ['release.yaml', 'deploy.yaml']) {
      for (const [, action, sha] of readFileSync(join(WORKFLOWS, name), 'utf8').matchAll(/uses: ([\w.-]+\/[\w.-]+)@([0-9a-f]{40})/g)) {
        pins.set(action, (pins.get(action) ?? new Set()).add(sha));
      }
    }
    for (const [action, shas] of pins) expect([...shas], action).toHaveLength(1);
  });

  it.each(['release.yaml', 'deploy.yaml'])('%s sets up the helm that scripts/install-tools.sh builds for the tests', (name) => {
    expect(load(name).env.HELM_VERSION).toBe(toolVersions().HELM_VERSION);
  });
});

describe('release.yaml', () => {
  const release = load('release.yaml');
  const jobs = release.jobs as Record<string, Yaml>;

  describe('the version check, first', () => {
    it('runs before the tests, so nothing is built or pushed for a tag that names another version', () => {
      expect(jobs.test.needs).toBe('version');
      const step = (jobs.version.steps as Yaml[]).find((s) => String(s.run).includes('check-release-version.sh'));
      expect(step?.run).toBe('scripts/check-release-version.sh ${TAG:+"$TAG"}');
      expect(step?.env.TAG).toBe("${{ github.ref_type == 'tag' && github.ref_name || '' }}");
    });

    /** The script in a copy of the repository files it reads, with the versions given. */
    function check(versions: { package: string; chart: string; app: string }, args: string[]) {
      const dir = mkdtempSync(join(tmpdir(), 'smtpgw-release-version-'));
      try {
        mkdirSync(join(dir, 'scripts'));
        mkdirSync(join(dir, 'charts/smtp-gateway'), { recursive: true });
        cpSync(join(REPO_ROOT, 'scripts/check-release-version.sh'), join(dir, 'scripts/check-release-version.sh'));
        const pkg = readFileSync(join(REPO_ROOT, 'package.json'), 'utf8');
        writeFileSync(join(dir, 'package.json'), pkg.replace(/^ {2}"version": "[^"]*",$/m, `  "version": "${versions.package}",`));
        const chart = readFileSync(join(REPO_ROOT, 'charts/smtp-gateway/Chart.yaml'), 'utf8');
        writeFileSync(
          join(dir, 'charts/smtp-gateway/Chart.yaml'),
          chart.replace(/^version: .*$/m, `version: ${versions.chart}`).replace(/^appVersion: .*$/m, `appVersion: "${versions.app}"`),
        );
        const result = spawnSync('bash', [join(dir, 'scripts/check-release-version.sh'), ...args], { encoding: 'utf8', timeout: 10_000 });
        return { status: result.status, output: result.stdout + result.stderr };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }

    it("passes on this repository's own versions, with the tag they name", () => {
      const version = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version;
      const result = spawnSync('bash', [join(REPO_ROOT, 'scripts/check-release-version.sh'), `v${version}`], { encoding: 'utf8' });
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
    });

    it('passes when tag, package and chart agree', () => {
      const result = check({ package: '1.4.2', chart: '1.4.2', app: '1.4.2' }, ['v1.4.2']);
      expect(result.output).toContain('release version 1.4.2 (tag v1.4.2): package.json, Chart.yaml version and appVersion agree');
      expect(result.status).toBe(0);
    });

    it('fails on a tag naming another version, printing both', () => {
      const result = check({ package: '1.4.2', chart: '1.4.2', app: '1.4.2' }, ['v1.5.0']);
      expect(result.status).toBe(1);
      expect(result.output).toContain("tag is 'v1.5.0' but package.json version is '1.4.2' (expected tag 'v1.4.2')");
    });

    it('fails on a chart version or appVersion other than the package version, printing both', () => {
      const result = check({ package: '1.4.2', chart: '1.4.1', app: '1.4.0' }, ['v1.4.2']);
      expect(result.status).toBe(1);
      expect(result.output).toContain("Chart.yaml version is '1.4.1' but package.json version is '1.4.2'");
      expect(result.output).toContain("Chart.yaml appVersion is '1.4.0' but package.json version is '1.4.2'");
    });

    it('without a tag (started by hand) still checks package and chart', () => {
      expect(check({ package: '1.4.2', chart: '1.4.2', app: '1.4.2' }, []).status).toBe(0);
      expect(check({ package: '1.4.2', chart: '1.4.3', app: '1.4.2' }, []).status).toBe(1);
    });
  });

  describe('the image carries an SBOM and build provenance', () => {
    const steps = jobs.image.steps as Yaml[];
    const build = steps.find((s) => String(s.uses).startsWith('docker/build-push-action'));
    const attest = steps.find((s) => String(s.uses).startsWith('actions/attest-build-provenance'));

    it('BuildKit attaches an SBOM and full provenance to the pushed image', () => {
      expect(build?.with).toMatchObject({ sbom: true, provenance: 'mode=max', push: true });
    });

    it('a signed provenance attestation is made for the digest that was pushed, and pushed beside it', () => {
      expect(build?.id).toBe('build');
      expect(attest?.with).toEqual({
        'subject-name': '${{ steps.ecr.outputs.registry }}/smtp-gateway',
        'subject-digest': '${{ steps.build.outputs.digest }}',
        'push-to-registry': true,
      });
      expect(attest?.if).toBe(build?.if);
      expect(steps.indexOf(attest!)).toBeGreaterThan(steps.indexOf(build!));
      expect(jobs.image.permissions).toEqual({ contents: 'read', 'id-token': 'write', attestations: 'write' });
    });
  });

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
    expect(script).toContain('--rollback-on-failure --wait');
    expect(script.indexOf('helm test')).toBeGreaterThan(script.indexOf('helm upgrade'));
  });
});
