/**
 * The fresh-machine check of scripts/install-system-packages.sh: it checks what the test peers can do,
 * not only that their commands exist. Run for real against this machine's swaks, promtool, busybox…;
 * a missing capability is made the way a fresh machine has it: a Perl module swaks cannot load (a
 * module on PERL5LIB that fails to load hides the installed one), or a command absent from PATH.
 * apt-get and debconf-set-selections are stand-ins that record their calls, so nothing is installed.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/repo';

const SCRIPT = join(REPO_ROOT, 'scripts/install-system-packages.sh');
const dir = mkdtempSync(join(tmpdir(), 'smtpgw-system-packages-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A Perl library folder whose Net::SSLeay fails to load, as on a machine without libnet-ssleay-perl. */
const withoutSsleay = join(dir, 'perl-without-ssleay');
mkdirSync(join(withoutSsleay, 'Net'), { recursive: true });
writeFileSync(join(withoutSsleay, 'Net/SSLeay.pm'), 'die "Net::SSLeay is not installed (simulated)\\n";\n');

/** Stand-ins for the installers: record the call, install nothing. */
const installers = join(dir, 'installers');
const calls = join(dir, 'installer-calls');
mkdirSync(installers);
for (const name of ['apt-get', 'debconf-set-selections']) {
  writeFileSync(join(installers, name), `#!/bin/sh\necho "${name} $*" >>"${calls}"\n`, { mode: 0o755 });
}

/** A PATH holding the system's commands except `left out`, for a machine without that command. */
function pathWithout(leftOut: string): string {
  const bin = join(dir, `without-${leftOut}`);
  mkdirSync(bin, { recursive: true });
  for (const name of ['bash', 'grep', 'sort', 'id', 'cat', 'perl', 'swaks', 'promtool', 'shellcheck', 'yamllint', 'busybox', 'python3']) {
    if (name === leftOut) continue;
    const found = spawnSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
    if (found) symlinkSync(found, join(bin, name));
  }
  return bin;
}

function run(args: string[], env: Record<string, string> = {}) {
  writeFileSync(calls, '');
  const result = spawnSync(SCRIPT, args, {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PATH: `${installers}:${process.env.PATH}`, ...env },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, installerCalls: readFileSync(calls, 'utf8') };
}

describe('install-system-packages.sh --check', () => {
  it('passes on this machine: swaks has STARTTLS and AUTH, and every other peer its capability', () => {
    const result = run(['--check']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('every capability the tests need is present');
    expect(result.status).toBe(0);
  });

  it('fails naming swaks STARTTLS and its packages when swaks cannot load Net::SSLeay', () => {
    // the same real swaks reports the missing module itself
    const support = spawnSync('swaks', ['--support'], { encoding: 'utf8', env: { ...process.env, PERL5LIB: withoutSsleay } });
    expect(support.stdout + support.stderr).toMatch(/TLS not available: requires Net::SSLeay/);

    const result = run(['--check'], { PERL5LIB: withoutSsleay });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('this machine lacks what the tests need');
    expect(result.stderr).toContain('missing: swaks STARTTLS (swaks --support: TLS) (Debian packages: swaks libnet-ssleay-perl libio-socket-ssl-perl)');
    expect(result.stderr).not.toContain('AUTH PLAIN');
    expect(result.installerCalls).toBe('');
  });

  it('fails naming each check of a command that is not there at all', () => {
    const result = run(['--check'], { PATH: pathWithout('swaks') });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('missing: swaks command (Debian packages: swaks)');
    expect(result.stderr).toContain('missing: swaks STARTTLS');
    expect(result.stderr).not.toContain('promtool');
  });

  it('checks what promtool can do, not only that it exists', () => {
    const result = run(['--check'], { PATH: pathWithout('promtool') });
    expect(result.status).toBe(1);
    for (const command of ['check metrics', 'check rules', 'test rules']) {
      expect(result.stderr).toContain(`missing: promtool ${command} (Debian packages: prometheus)`);
    }
  });
});

describe('install-system-packages.sh (install)', () => {
  it('installs nothing when every capability is present (idempotent)', () => {
    const result = run([]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('all present, every capability checked');
    expect(result.installerCalls).toBe('');
  });

  it('installs the packages a missing capability needs, and fails with the check when that did not help', () => {
    const result = run([], { PERL5LIB: withoutSsleay });
    expect(result.installerCalls).toContain('apt-get install -y -qq --no-install-recommends libio-socket-ssl-perl libnet-ssleay-perl swaks');
    // the stand-in apt-get installed nothing, so the capability is still missing: said, not ignored
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("the tests' needs are still not met");
    expect(result.stderr).toContain('missing: swaks STARTTLS');
  });

  it('--help says what it checks; an unknown argument is refused', () => {
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/swaks, with STARTTLS \(libnet-ssleay-perl, libio-socket-ssl-perl\)/);
    const bad = run(['--frobnicate']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("unknown argument '--frobnicate'");
  });
});
