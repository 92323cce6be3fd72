/**
 * gateway/Dockerfile and .dockerignore, checked without a Docker engine: dockerfile-utils lints the file
 * (the validator behind the Docker language server), dockerfile-ast parses it so each rule of the image can
 * be checked against the names it must agree with (constants.ts, package.json), and @balena/dockerignore
 * applies .dockerignore with Docker's own matching to the files of this repository.
 * The runtime stage itself is run in image-runtime.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import dockerignore from '@balena/dockerignore';
import type { Copy, Env, Instruction, Label } from 'dockerfile-ast';
import { validate, ValidationSeverity } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';
import { CONTAINER_PORTS, NODE_OPTIONS, RUN_AS_GROUP, RUN_AS_USER } from '../../gateway/src/config/constants';
import { DOCKERFILE_TEXT, dockerfile, ofKind, runtimeStage, stages, words } from './helpers/dockerfile';
import { REPO_ROOT } from './helpers/repo';

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; engines: { node: string } };
const line = (instruction: Instruction) => `${instruction.getKeyword()} ${words(instruction).join(' ')}`;
const build = stages().get('build') ?? [];
const runtime = runtimeStage;

describe('gateway/Dockerfile', () => {
  it('passes the dockerfile-utils linter with every rule set to error', () => {
    const all = ValidationSeverity.ERROR;
    const diagnostics = validate(DOCKERFILE_TEXT, {
      deprecatedMaintainer: all,
      directiveCasing: all,
      emptyContinuationLine: all,
      instructionCasing: all,
      instructionCmdMultiple: all,
      instructionEntrypointMultiple: all,
      instructionHealthcheckMultiple: all,
      instructionJSONInSingleQuotes: all,
      instructionWorkdirRelative: all,
    });
    expect(diagnostics.map((d) => `line ${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
  });

  it('has a build stage and a runtime stage, the runtime stage last (the default target)', () => {
    expect([...stages().keys()]).toEqual(['build', 'runtime']);
  });

  it('builds both stages on the pinned Node.js (.nvmrc), slim, by exact version, which engines accepts', () => {
    const images = dockerfile.getFROMs().map((from) => {
      const image = from.getImage() ?? '';
      const variable = /^\$\{?(\w+)\}?$/.exec(image)?.[1];
      if (!variable) return image;
      const arg = dockerfile.getInitialARGs().find((a) => a.getProperty()?.getName() === variable);
      return arg?.getProperty()?.getValue() ?? `unset ARG ${variable}`;
    });
    expect(images).toHaveLength(2);
    expect(new Set(images).size).toBe(1);
    // The image, the tools folder (scripts/install-node.sh) and CI (node-version-file) all read .nvmrc's version.
    const pinned = readFileSync(join(REPO_ROOT, '.nvmrc'), 'utf8').trim();
    expect(images[0]).toMatch(new RegExp(`^node:${pinned.replaceAll('.', '\\.')}-[a-z]+-slim(@sha256:[0-9a-f]{64})?$`));
    // engines is a caret range on the pinned line: same major, minor at or below the pinned one.
    const [, major, minor] = /^(\d+)\.(\d+)\.\d+$/.exec(pinned) ?? [];
    const [, wantMajor, wantMinor] = /^\^(\d+)\.(\d+)\.\d+$/.exec(pkg.engines.node) ?? [];
    expect([major, Number(minor) >= Number(wantMinor)]).toEqual([wantMajor, true]);
  });

  it('runs the tests on the pinned Node.js (the Makefile puts .tools/node first on PATH)', () => {
    const pinned = readFileSync(join(REPO_ROOT, '.nvmrc'), 'utf8').trim();
    expect(process.version).toBe(`v${pinned}`);
    expect(execFileSync('node', ['--version'], { encoding: 'utf8' }).trim()).toBe(`v${pinned}`);
  });

  it('installs every dependency and compiles in the build stage', () => {
    const runs = ofKind(build, 'RUN').map(line);
    expect(runs).toContainEqual(expect.stringMatching(/^RUN npm ci( |$)/));
    expect(runs.join('\n')).not.toContain('--omit=dev');
    expect(runs).toContainEqual(expect.stringMatching(/^RUN npm run build( |$)/));
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json');
  });

  it('puts only production dependencies and the compiled code in the runtime stage', () => {
    const runs = ofKind(runtime, 'RUN').map(line);
    expect(runs).toContainEqual(expect.stringMatching(/^RUN npm ci --omit=dev( |$)/));
    const copies = ofKind(runtime, 'COPY') as Copy[];
    const fromBuild = copies.filter((c) => c.getFromFlag()?.getValue() === 'build').map(words);
    expect(fromBuild).toEqual([['/src/dist', './dist']]);
    const fromContext = copies.filter((c) => !c.getFromFlag()).flatMap((c) => words(c).slice(0, -1));
    expect(fromContext.sort()).toEqual(['package-lock.json', 'package.json']);
  });

  it('runs as the numeric uid/gid that constants.ts gives the chart', () => {
    const users = ofKind(runtime, 'USER').map(words);
    expect(users).toEqual([[`${RUN_AS_USER}:${RUN_AS_GROUP}`]]);
    const created = ofKind(runtime, 'RUN').map(line).join('\n');
    expect(created).toContain(`groupadd --system --gid ${RUN_AS_GROUP}`);
    expect(created).toContain(`useradd --system --uid ${RUN_AS_USER} --gid ${RUN_AS_GROUP}`);
    // Nothing runs as the gateway user at build time, so nothing it owns lands in the image.
    const userAt = runtime.findIndex((i) => i.getKeyword() === 'USER');
    expect(runtime.slice(userAt).map((i) => i.getKeyword())).not.toContain('RUN');
  });

  it('runs node with the NODE_OPTIONS constants.ts names (the benchmark measures with the same)', () => {
    const env = Object.fromEntries((ofKind(runtime, 'ENV') as Env[]).flatMap((e) => e.getProperties()).map((p) => [p.getName(), p.getValue()]));
    expect(env.NODE_OPTIONS?.replace(/^"|"$/g, '')).toBe(NODE_OPTIONS);
  });

  it('writes nowhere but /tmp: no VOLUME, HOME is /tmp', () => {
    expect(ofKind(runtime, 'VOLUME')).toEqual([]);
    const env = Object.fromEntries((ofKind(runtime, 'ENV') as Env[]).flatMap((e) => e.getProperties()).map((p) => [p.getName(), p.getValue()]));
    expect(env).toMatchObject({ HOME: '/tmp', NODE_ENV: 'production' });
  });

  it('exposes exactly the container ports of constants.ts', () => {
    const exposed = ofKind(runtime, 'EXPOSE').flatMap(words).map(Number);
    expect(exposed.sort()).toEqual(Object.values(CONTAINER_PORTS).sort());
  });

  it('starts node itself as PID 1 (exec form, not npm or a shell), on the file package.json starts', () => {
    const entrypoints = ofKind(runtime, 'ENTRYPOINT');
    expect(entrypoints).toHaveLength(1);
    const raw = entrypoints[0].getRawArgumentsContent() ?? '';
    expect(() => JSON.parse(raw)).not.toThrow();
    expect(JSON.parse(raw)).toEqual(pkg.scripts.start.split(' '));
    expect(ofKind(runtime, 'CMD')).toEqual([]);
  });

  it('labels the image with OCI version, revision and source from build args', () => {
    const args = ofKind(runtime, 'ARG').map((a) => words(a)[0].split('=')[0]);
    expect(args).toEqual(expect.arrayContaining(['VERSION', 'REVISION', 'SOURCE']));
    const labels = Object.fromEntries((ofKind(runtime, 'LABEL') as Label[]).flatMap((l) => l.getProperties()).map((p) => [p.getName(), p.getValue()]));
    expect(labels).toMatchObject({
      'org.opencontainers.image.version': '${VERSION}',
      'org.opencontainers.image.revision': '${REVISION}',
      'org.opencontainers.image.source': '${SOURCE}',
    });
  });
});

describe('.dockerignore', () => {
  const ignore = dockerignore({ ignorecase: false }).add(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'));
  const tracked = execFileSync('git', ['ls-files'], { cwd: REPO_ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
  // Not tracked, but present in a developer's checkout.
  const local = ['node_modules/yaml/package.json', 'dist/gateway/src/main.js', '.tools/bin/helm', '.git/config', '.env'];
  const context = ignore.filter([...tracked, ...local]);

  it('sends every file the Dockerfile copies', () => {
    const copied = dockerfile
      .getCOPYs()
      .filter((c) => !c.getFromFlag())
      .flatMap((c) => words(c).slice(0, -1));
    for (const source of copied) {
      const present = context.some((file) => file === source || file.startsWith(`${source}/`));
      expect(present, `${source} is copied by the Dockerfile but excluded by .dockerignore`).toBe(true);
    }
    const sources = tracked.filter((f) => f.startsWith('gateway/src/') && f.endsWith('.ts') && !f.endsWith('.test.ts'));
    expect(sources.length).toBeGreaterThan(0);
    expect(context).toEqual(expect.arrayContaining(sources));
  });

  it('keeps tests, charts, node_modules, build output, tools, git and env files out', () => {
    const leaked = context.filter((file) => /^(gateway\/test|testkit|synth|charts|scripts|bench|node_modules|dist|\.tools|\.git|\.github|eksctl|values)\/|^\.env$/.test(file));
    expect(leaked).toEqual([]);
    expect(existsSync(join(REPO_ROOT, 'gateway/test'))).toBe(true);
  });
});
