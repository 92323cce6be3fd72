/**
 * `make deps synth` is all it takes to synthesise the chart, as the README says: run in a copy of the
 * work tree with a PATH that has no Go, no apt-get, no sudo and none of the tools `make tools` builds
 * (helm, kubeconform…), only the pinned Node.js that `make deps` installs (already there, so it stays
 * offline) and the installed npm packages. The chart it writes must be the committed one.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/repo';

/** The only programs on PATH: a shell, make, and the coreutils the Makefile and install-node.sh call. */
const SYSTEM = ['bash', 'sh', 'make', 'env', 'cat', 'tr', 'uname', 'ln', 'rm', 'mkdir', 'dirname', 'basename', 'sed', 'grep', 'awk', 'head'];

const dir = mkdtempSync(join(tmpdir(), 'smtpgw-synth-no-tools-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The work tree's files (tracked and new, not ignored), with their times, so make sees them as they are. */
function copyWorkTree(to: string): void {
  const listed = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  for (const file of listed.stdout.split('\0').filter(Boolean)) {
    if (!existsSync(join(REPO_ROOT, file))) continue; // deleted, not yet committed
    mkdirSync(dirname(join(to, file)), { recursive: true });
    cpSync(join(REPO_ROOT, file), join(to, file), { preserveTimestamps: true, verbatimSymlinks: true });
  }
}

describe('make deps synth', () => {
  it('synthesises the committed chart with no Go, apt, sudo or built tools on PATH', () => {
    const tree = join(dir, 'repo');
    copyWorkTree(tree);
    // make deps finds the pinned Node.js and up-to-date packages; the tools folder has nothing else
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(tree, 'node_modules'));
    const node = readlinkSync(join(REPO_ROOT, '.tools', 'node'));
    mkdirSync(join(tree, '.tools'));
    symlinkSync(join(REPO_ROOT, '.tools', node), join(tree, '.tools', node));
    symlinkSync(node, join(tree, '.tools', 'node'));

    const bin = join(dir, 'bin');
    mkdirSync(bin);
    for (const name of SYSTEM) {
      const found = spawnSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
      if (!found) throw new Error(`this test needs '${name}' on PATH`);
      symlinkSync(found, join(bin, name));
    }
    // HOME is the temp folder and stdin /dev/null: a bash whose stdin is a socket (Node's pipes) takes
    // itself for an ssh session and reads ~/.bashrc, which on a developer machine may put Go on PATH.
    const env = { PATH: bin, HOME: dir, LANG: 'C.UTF-8' };
    for (const absent of ['go', 'apt-get', 'sudo', 'helm', 'kubeconform', 'npm', 'node']) {
      const found = spawnSync('bash', ['-c', `command -v ${absent}`], { env, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
      expect(found.status, `${absent} is off PATH: ${found.stdout}`).not.toBe(0);
    }

    const result = spawnSync('make', ['--no-print-directory', 'deps', 'synth'], {
      cwd: tree,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(result.stdout + result.stderr).toContain('node: ');
    expect(result.stdout + result.stderr).toContain('deps: node_modules up to date');
    expect(result.stdout + result.stderr).toMatch(/synth: wrote \d+ files to charts\/smtp-gateway/);
    expect(result.status, result.stdout + result.stderr).toBe(0);

    const chart = spawnSync('git', ['ls-files', 'charts/smtp-gateway'], { cwd: REPO_ROOT, encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    expect(chart.length).toBeGreaterThan(5);
    for (const file of chart) expect(readFileSync(join(tree, file), 'utf8'), file).toBe(readFileSync(join(REPO_ROOT, file), 'utf8'));
    expect(readFileSync(join(tree, 'README.md'), 'utf8')).toBe(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'));
  });
});
