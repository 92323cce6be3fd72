import { spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hashPassword, parseUserFile, UserFileError, watchUserStore, type WatchedUserStore } from '../src/smtp/auth-users';
import { eventually } from '../../testkit/eventually';
import { makeSecretVolume } from '../../testkit/secret-volume';

const ROOT = join(__dirname, '..', '..');
/** Cheap parameters keep the suite fast; the format and code path are the same. */
const FAST = { N: 1024 };

async function usersFile(text: string): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), 'smtp-gateway-users-')), 'auth-users');
  await writeFile(path, text);
  return path;
}

/** The users file as the gateway loads it (watched, closed after each test). */
const opened: WatchedUserStore[] = [];
afterEach(() => opened.splice(0).forEach((store) => store.close()));
function loadUsers(path: string): WatchedUserStore {
  const store = watchUserStore(path, () => undefined);
  opened.push(store);
  return store;
}

describe('hashPassword', () => {
  it('writes scrypt$N$r$p$salt$key with a fresh salt each time', async () => {
    const one = await hashPassword('s3cret');
    const two = await hashPassword('s3cret');
    expect(one).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
    expect(one).not.toBe(two);
    expect(await hashPassword('x', { N: 2048, r: 4, p: 2, keyBytes: 64 })).toMatch(/^scrypt\$2048\$4\$2\$/);
  });

  it('refuses parameters outside the safe bounds', async () => {
    await expect(hashPassword('x', { N: 1000 })).rejects.toThrow(/N=1000 must be a power of two/);
    await expect(hashPassword('x', { keyBytes: 8 })).rejects.toThrow(/key of 8 bytes/);
  });
});

describe('UserStore', () => {
  it('verifies passwords of the users in the file', async () => {
    const text = [
      '# apps allowed to relay',
      '',
      `billing:${await hashPassword('pw-billing', FAST)}`,
      `  reports:${await hashPassword('pw-reports', { N: 2048 })}  `,
      `svc:with:colon:${await hashPassword('pw-colon', FAST)}\r`,
      '   # indented comment',
    ].join('\n');
    const store = loadUsers(await usersFile(text));
    expect(store.size).toBe(3);
    expect(await store.verify('billing', 'pw-billing')).toBe(true);
    expect(await store.verify('billing', 'pw-reports')).toBe(false);
    expect(await store.verify('billing', 'pw-billing ')).toBe(false);
    expect(await store.verify('reports', 'pw-reports')).toBe(true);
    expect(await store.verify('svc:with:colon', 'pw-colon')).toBe(true);
    expect(await store.verify('Billing', 'pw-billing')).toBe(false);
    expect(await store.verify('nobody', 'pw-billing')).toBe(false);
    expect(await store.verify('', '')).toBe(false);
    expect(store.has('billing')).toBe(true);
    expect(store.has('nobody')).toBe(false);
  });

  it('handles non-ASCII passwords', async () => {
    const store = parseUserFile(`u:${await hashPassword('pässwörd-密码', FAST)}`, 'inline');
    expect(await store.verify('u', 'pässwörd-密码')).toBe(true);
    expect(await store.verify('u', 'passwort-密码')).toBe(false);
  });

  it('spends scrypt work on unknown users too', async () => {
    // default cost: a shortcut for unknown users would answer in well under a millisecond
    const store = parseUserFile(`known:${await hashPassword('pw')}`, 'inline');
    const time = async (user: string) => {
      const start = process.hrtime.bigint();
      await store.verify(user, 'wrong');
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    await time('known');
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 5; i++) {
      known.push(await time('known'));
      unknown.push(await time('unknown'));
    }
    const median = (list: number[]) => list.sort((a, b) => a - b)[2];
    expect(median(unknown)).toBeGreaterThan(median(known) * 0.3);
  });

  it('accepts an empty file (no users)', async () => {
    const store = loadUsers(await usersFile('# nobody yet\n'));
    expect(store.size).toBe(0);
    expect(await store.verify('a', 'b')).toBe(false);
  });

  it.each([
    ['nocolon', /auth-users:2: expected "username:hash", found no ":"/],
    [':scrypt$1024$8$1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5a2V5', /auth-users:2: the user name before ":" is empty/],
    ['app:plaintext-password', /auth-users:2: user "app": expected a hash "scrypt\$N\$r\$p\$<salt base64>\$<key base64>".*got 1 "\$"-separated fields starting "plaintext-password"/],
    ['app:bcrypt$10$abc$def$ghi$jkl', /auth-users:2: user "app": .*starting "bcrypt"/],
    ['app:scrypt$1000$8$1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5a2V5', /auth-users:2: user "app": scrypt N=1000 must be a power of two/],
    ['app:scrypt$1024$x$1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5a2V5', /auth-users:2: user "app": scrypt r="x" is not a positive integer/],
    ['app:scrypt$4194304$8$1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5a2V5', /N=4194304 must be a power of two from 2 to 1048576/],
    ['app:scrypt$1024$8$1$c2FsdHNhbHQ=$a2V5!!', /auth-users:2: user "app": scrypt key is not base64/],
    ['app:scrypt$1024$8$1$c2E=$a2V5a2V5a2V5a2V5a2V5a2V5', /salt of 2 bytes is shorter than 8/],
  ])('refuses line %j with file, line and reason', async (line, message) => {
    const path = await usersFile(`# header\n${line}\n`);
    const error = (() => {
      try {
        return loadUsers(path);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(UserFileError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toContain(path);
  });

  it('refuses a user defined twice, naming both lines', async () => {
    const hash = await hashPassword('x', FAST);
    const path = await usersFile(`a:${hash}\n\na:${hash}\n`);
    expect(() => loadUsers(path)).toThrow(/auth-users:3: user "a" is already defined on line 1/);
  });

  it('names a missing file', async () => {
    expect(() => loadUsers('/nonexistent/auth-users')).toThrow(/Cannot read users file \/nonexistent\/auth-users: ENOENT/);
  });
});

describe('watchUserStore', () => {
  let store: WatchedUserStore | undefined;
  afterEach(() => store?.close());

  it('follows a Kubernetes Secret update and keeps the old users when the new file is bad', async () => {
    const volume = await makeSecretVolume({ 'auth-users': `app:${await hashPassword('old', FAST)}\n` });
    const errors: Error[] = [];
    let reloads = 0;
    store = watchUserStore(volume.path('auth-users'), (error) => errors.push(error), { pollMs: 60_000, onReload: () => reloads++ });
    expect(await store.verify('app', 'old')).toBe(true);

    await volume.update({ 'auth-users': `app:${await hashPassword('new', FAST)}\nother:${await hashPassword('o', FAST)}\n` });
    await eventually(() => store!.verify('app', 'new'), 'the new password to be accepted');
    expect(await store.verify('app', 'old')).toBe(false);
    expect(store.size).toBe(2);
    expect(reloads).toBe(1);

    await volume.update({ 'auth-users': 'app:not-a-hash\n' });
    await eventually(() => errors.length > 0, 'the reload error');
    expect(errors[0]).toBeInstanceOf(UserFileError);
    expect(errors[0].message).toMatch(/auth-users:1: user "app": expected a hash.*; keeping the previous users$/);
    expect(await store.verify('app', 'new')).toBe(true);
    expect(store.size).toBe(2);
  });

  it('picks up a change by polling when no file event arrives, and check() on demand', async () => {
    const path = await usersFile(`app:${await hashPassword('one', FAST)}\n`);
    const errors: Error[] = [];
    store = watchUserStore(path, (error) => errors.push(error), { pollMs: 100 });
    await writeFile(path, `app:${await hashPassword('two', FAST)}\n`);
    await eventually(() => store!.verify('app', 'two'), 'the polled change');

    await writeFile(path, `app:${await hashPassword('three', FAST)}\n`);
    await store.check();
    expect(await store.verify('app', 'three')).toBe(true);
    await writeFile(path, 'broken\n');
    await store.check();
    expect(errors.map((error) => error.message)).toContainEqual(expect.stringMatching(/auth-users:1: expected "username:hash".*; keeping the previous users$/));
    expect(await store.verify('app', 'three')).toBe(true);
  });

  it('fails at start-up on a bad file', async () => {
    const path = await usersFile('x\n');
    expect(() => watchUserStore(path, () => undefined)).toThrow(/auth-users:1: expected "username:hash"/);
  });
});

describe('hash-password CLI', () => {
  const tsx = join(ROOT, 'node_modules', '.bin', 'tsx');
  const cli = (args: string[], input: string) =>
    spawnSync(tsx, [join(ROOT, 'gateway/src/cli/hash-password.ts'), ...args], { input, encoding: 'utf8', timeout: 20_000 });

  it('prints a users-file line that verifies the password read from stdin', async () => {
    const result = cli(['app1', '--cost', '1024'], 'correct horse\n');
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^app1:scrypt\$1024\$8\$1\$\S+\n$/);
    const store = parseUserFile(result.stdout, 'cli output');
    expect(await store.verify('app1', 'correct horse')).toBe(true);
    expect(await store.verify('app1', 'correct horse\n')).toBe(false);
  });

  it('explains usage errors and --help', () => {
    const help = cli(['--help'], '');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: hash-password \[--cost N\] USERNAME/);
    const noUser = cli([], 'pw\n');
    expect(noUser.status).toBe(2);
    expect(noUser.stderr).toMatch(/USERNAME is required/);
    const empty = cli(['app'], '');
    expect(empty.status).toBe(2);
    expect(empty.stderr).toMatch(/password read from stdin is empty/);
    const cost = cli(['app', '--cost', '1000'], 'pw');
    expect(cost.status).toBe(2);
    expect(cost.stderr).toMatch(/--cost expects a power of two/);
  });

  it('runs as make hash-password SMTP_USER=...', async () => {
    const result = spawnSync('make', ['-s', '--no-print-directory', 'hash-password', 'SMTP_USER=mailer'], { cwd: ROOT, input: 'pw-from-make', encoding: 'utf8', timeout: 30_000 });
    expect(result.status).toBe(0);
    expect(await parseUserFile(result.stdout, 'make output').verify('mailer', 'pw-from-make')).toBe(true);
  });
});
