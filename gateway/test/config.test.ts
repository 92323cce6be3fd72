/**
 * Configuration at the edge: YAML file and SMTPGW_* overrides typed by the
 * schema, one validation with errors that name the key, the value and what was
 * expected (exit 2), --help and --print-config, no silent fallback (an upstream
 * host, or the development upstream asked for by name as `make run` does).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load';

const REPO = resolve(__dirname, '../..');
const MAIN = join(REPO, 'gateway/src/main.ts');

function runMain(args: string[], env: Record<string, string> = {}, cwd = REPO) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd,
    env: { ...cleanEnv(), ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The test's own environment without any SMTPGW_* the developer may have set. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('SMTPGW_')));
}

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('the defaults need only an upstream host', () => {
    const { config } = loadConfig({ env: { SMTPGW_UPSTREAM__HOST: 'smtp.example' } });
    expect(config.devUpstream.enabled).toBe(false);
    expect(config.listenAddress).toBe('127.0.0.1');
    expect(config.listeners.relay).toEqual({ enabled: true, port: 2525 });
    expect(config.ops.port).toBe(9090);
    expect(config.upstream.host).toBe('smtp.example');
    expect(config.policy.clientPrefixLength).toEqual({ ipv4: 32, ipv6: 64 });
    expect(config.deadlines).toEqual({
      firstCommandSeconds: 30,
      commandSeconds: 60,
      authOrMailSeconds: 30,
      dataGraceSeconds: 30,
      dataMinBytesPerSecond: 500,
      dataMaxSeconds: 600,
      sessionMaxSeconds: 3600,
      maxCommands: 10000,
    });
    expect(config.policy.allowedNetworks).toEqual(['127.0.0.0/8', '::1/128']);
  });

  it('reads the YAML file named by SMTPGW_CONFIG; environment overrides win and are typed by the schema', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-config-'));
    const file = join(dir, 'config.yaml');
    await writeFile(file, 'upstream:\n  host: file.example\n  port: 2587\npolicy:\n  maxRecipients: 10\n');
    const { config } = loadConfig({
      env: {
        SMTPGW_CONFIG: file,
        SMTPGW_UPSTREAM__HOST: 'email-smtp.eu-west-1.amazonaws.com',
        SMTPGW_POLICY__ALLOWED_NETWORKS: '10.0.0.0/8, fd00::/8',
        SMTPGW_AUTH__ALLOW_INSECURE: 'true',
        SMTPGW_UPSTREAM__MESSAGES_PER_SECOND: '14',
        SMTPGW_LISTENERS__SUBMISSION__ENABLED: 'yes',
      },
    });
    expect(config.upstream.host).toBe('email-smtp.eu-west-1.amazonaws.com');
    expect(config.upstream.port).toBe(2587);
    expect(config.policy.maxRecipients).toBe(10);
    expect(config.policy.allowedNetworks).toEqual(['10.0.0.0/8', 'fd00::/8']);
    expect(config.auth.allowInsecure).toBe(true);
    expect(config.upstream.messagesPerSecond).toBe(14);
    expect(config.listeners.submission.enabled).toBe(true);
  });

  it('errors name the key, the offending value and what was expected — all of them at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-config-'));
    const file = join(dir, 'config.yaml');
    await writeFile(file, 'upstream:\n  security: plaintext\npolicy:\n  allowedNetworks: [10.0.0.0/33]\n  senderDomains: ["not a domain"]\nbogus: 1\n');
    const found = problems(() => loadConfig({ env: { SMTPGW_CONFIG: file } }));
    expect(found.join('\n')).toMatch(/upstream\.security: got "plaintext"; expected one of "starttls"\|"tls"\|"none"/);
    expect(found.join('\n')).toMatch(/policy\.allowedNetworks\.0: got "10\.0\.0\.0\/33"; expected an IP address or CIDR block/);
    expect(found.join('\n')).toMatch(/policy\.senderDomains\.0: got "not a domain"; expected a domain name/);
    expect(found.join('\n')).toMatch(/bogus: not a configuration key/);
  });

  it('environment values that do not fit their key are refused with the variable name', () => {
    const found = problems(() => loadConfig({ env: { SMTPGW_POLICY__MAX_RECIPIENTS: 'lots', SMTPGW_UPSTREAM__HOTS: 'x', SMTPGW_AUTH__ALLOW_INSECURE: 'maybe' } }));
    expect(found).toContain('SMTPGW_POLICY__MAX_RECIPIENTS="lots" (policy.maxRecipients): expected a decimal number');
    expect(found).toContain('SMTPGW_AUTH__ALLOW_INSECURE="maybe" (auth.allowInsecure): expected true or false');
    expect(found.find((p) => p.startsWith('SMTPGW_UPSTREAM__HOTS'))).toMatch(/upstream\.hots is not a configuration key \(keys here: HOST, PORT/);
  });

  it('an environment value the schema refuses names the variable it came from', () => {
    const found = problems(() => loadConfig({ env: { SMTPGW_UPSTREAM__PORT: '70000', SMTPGW_POLICY__ALLOWED_NETWORKS: '10.0.0.0/8,10.0.0.0/33' } }));
    expect(found.find((p) => p.startsWith('upstream.port'))).toMatch(/^upstream\.port: got 70000; .*<=65535.* \(from SMTPGW_UPSTREAM__PORT\)$/);
    expect(found.find((p) => p.startsWith('policy.allowedNetworks'))).toMatch(/^policy\.allowedNetworks\.1: got "10\.0\.0\.0\/33"; .* \(from SMTPGW_POLICY__ALLOWED_NETWORKS\)$/);
  });

  it('problems in the environment and in the file are reported together', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-config-'));
    const file = join(dir, 'config.yaml');
    await writeFile(file, 'upstream:\n  security: plaintext\n');
    const found = problems(() => loadConfig({ env: { SMTPGW_CONFIG: file, SMTPGW_POLICY__MAX_RECIPIENTS: 'lots' } }));
    expect(found).toContain('SMTPGW_POLICY__MAX_RECIPIENTS="lots" (policy.maxRecipients): expected a decimal number');
    expect(found.join('\n')).toMatch(/upstream\.security: got "plaintext"/);
  });

  it('upstream.security none is refused for an upstream off this host (mail and password would cross the network in clear)', () => {
    const found = problems(() => loadConfig({ env: { SMTPGW_UPSTREAM__HOST: 'email-smtp.us-east-1.amazonaws.com', SMTPGW_UPSTREAM__SECURITY: 'none' } }));
    expect(found.join('\n')).toMatch(/^upstream\.security: got "none"; .*loopback.*email-smtp\.us-east-1\.amazonaws\.com.* \(from SMTPGW_UPSTREAM__SECURITY\)$/m);
    for (const host of ['127.0.0.1', '::1', 'localhost']) {
      expect(loadConfig({ env: { SMTPGW_UPSTREAM__HOST: host, SMTPGW_UPSTREAM__SECURITY: 'none' } }).config.upstream.security).toBe('none');
    }
  });

  it('PROXY protocol on with no trusted load balancer network is refused (every connection would be)', () => {
    const found = problems(() => loadConfig({ env: { SMTPGW_PROXY_PROTOCOL__ENABLED: 'true' } }));
    expect(found.join('\n')).toMatch(/^proxyProtocol\.trustedNetworks: .*must name the load balancer networks \(got \[\]\)/m);
    const { config } = loadConfig({
      env: { SMTPGW_UPSTREAM__HOST: 'smtp.example', SMTPGW_PROXY_PROTOCOL__ENABLED: 'true', SMTPGW_PROXY_PROTOCOL__TRUSTED_NETWORKS: '10.0.0.0/16' },
    });
    expect(config.proxyProtocol.trustedNetworks).toEqual(['10.0.0.0/16']);
  });

  it('variables that only share the prefix (Kubernetes service links) are not configuration', () => {
    const { config } = loadConfig({
      env: {
        SMTPGW_SMTP_GATEWAY_SERVICE_HOST: '10.0.0.1',
        SMTPGW_SMTP_GATEWAY_SERVICE_PORT: '25',
        SMTPGW_SMTP_GATEWAY_PORT: 'tcp://10.0.0.1:25',
        SMTPGW_SMTP_GATEWAY_PORT_25_TCP: 'tcp://10.0.0.1:25',
        SMTPGW_SMTP_GATEWAY_PORT_25_TCP_PROTO: 'tcp',
        SMTPGW_SMTP_GATEWAY_PORT_25_TCP_PORT: '25',
        SMTPGW_SMTP_GATEWAY_PORT_25_TCP_ADDR: '10.0.0.1',
        SMTPGW_HOSTNAME: 'gw.example',
        SMTPGW_UPSTREAM__HOST: 'smtp.example',
      },
    });
    expect(config.hostname).toBe('gw.example');
  });

  it('an unknown SMTPGW_* variable is refused with the nearest known one (a service-link name with a non-link value too)', () => {
    const found = problems(() =>
      loadConfig({ env: { SMTPGW_LISTEN_ADDR: '0.0.0.0', SMTPGW_OPS_PORT: '9091', SMTPGW_UPSTREAM__MAX_CONECTIONS: '3', SMTPGW_TOTALLY_UNRELATED_THING: 'x' } }),
    );
    expect(found).toContainEqual(expect.stringMatching(/^SMTPGW_LISTEN_ADDR: listen_addr is not a configuration key .*; did you mean SMTPGW_LISTEN_ADDRESS\?$/));
    expect(found).toContainEqual(expect.stringMatching(/^SMTPGW_OPS_PORT: .*; did you mean SMTPGW_OPS__PORT\?$/));
    expect(found).toContainEqual(expect.stringMatching(/^SMTPGW_UPSTREAM__MAX_CONECTIONS: upstream\.max_conections is not .*; did you mean SMTPGW_UPSTREAM__MAX_CONNECTIONS\?$/));
    expect(found).toContainEqual(expect.stringMatching(/^SMTPGW_TOTALLY_UNRELATED_THING: totally_unrelated_thing is not a configuration key \(keys here: [^)]*\)$/));
  });

  it('numbers from the environment are decimal only: hex, binary, octal and exponents are refused, naming key and value', () => {
    for (const raw of ['0x10', '1e1', '0b101', '0o20', 'Infinity', '16 apples', '']) {
      expect(problems(() => loadConfig({ env: { SMTPGW_UPSTREAM__HOST: 'smtp.example', SMTPGW_POLICY__MAX_RECIPIENTS: raw } }))).toEqual([
        `SMTPGW_POLICY__MAX_RECIPIENTS=${JSON.stringify(raw)} (policy.maxRecipients): expected a decimal number`,
      ]);
    }
    const env = { SMTPGW_UPSTREAM__HOST: 'smtp.example', SMTPGW_POLICY__MAX_RECIPIENTS: ' 16 ', SMTPGW_UPSTREAM__MESSAGES_PER_SECOND: '13.5' };
    const { config } = loadConfig({ env });
    expect(config.policy.maxRecipients).toBe(16);
    expect(config.upstream.messagesPerSecond).toBe(13.5);
  });

  it('no upstream host is an error naming the key; the development upstream is only used when asked for, and never together with a host', () => {
    expect(problems(() => loadConfig({ env: {} }))).toEqual([expect.stringMatching(/^upstream\.host: got missing; expected the smarthost.*devUpstream\.enabled: true/)]);
    expect(problems(() => loadConfig({ env: { SMTPGW_UPSTREAM__HOST: '' } }))[0]).toMatch(/^upstream\.host: got ""; .*\(from SMTPGW_UPSTREAM__HOST\)$/);
    expect(loadConfig({ env: { SMTPGW_DEV_UPSTREAM__ENABLED: 'true' } }).config.devUpstream.enabled).toBe(true);
    expect(problems(() => loadConfig({ env: { SMTPGW_DEV_UPSTREAM__ENABLED: 'true', SMTPGW_UPSTREAM__HOST: 'smtp.example' } }))[0]).toMatch(
      /^devUpstream\.enabled: got true; devUpstream\.enabled and upstream\.host "smtp\.example" exclude each other/,
    );
  });

  it('an empty SMTPGW_CONFIG is an error, not the built-in defaults', () => {
    expect(problems(() => loadConfig({ env: { SMTPGW_CONFIG: '', SMTPGW_UPSTREAM__HOST: 'smtp.example' } }))).toEqual(['SMTPGW_CONFIG: expected a file name, got ""']);
  });

  it('a missing or broken file is named', async () => {
    expect(problems(() => loadConfig({ file: '/nonexistent/gw.yaml', env: {} }))[0]).toMatch(/config file "\/nonexistent\/gw\.yaml" cannot be read/);
    const dir = await mkdtemp(join(tmpdir(), 'gw-config-'));
    await writeFile(join(dir, 'bad.yaml'), 'upstream: [unclosed\n');
    expect(problems(() => loadConfig({ file: join(dir, 'bad.yaml'), env: {} }))[0]).toMatch(/is not valid YAML/);
  });
});

describe('the CLI', () => {
  it('a bad value stops the process with exit code 2 and a message on stderr', () => {
    const result = runMain([], { SMTPGW_UPSTREAM__PORT: '70000' });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/upstream\.port: got 70000; .*65535/);
  });

  it('--help lists every setting with its environment variable', () => {
    const result = runMain(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('SMTPGW_UPSTREAM__HOST');
    expect(result.stdout).toContain('SMTPGW_POLICY__ALLOWED_NETWORKS');
    expect(result.stdout).toContain('--print-config');
  });

  it('--print-config prints the effective config; secret files appear by path only, their contents never', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-secret-'));
    const passwordFile = join(dir, 'upstream-password');
    await writeFile(passwordFile, 'TOP-SECRET-PASSWORD');
    const config = join(dir, 'config.yaml');
    await writeFile(config, `upstream:\n  host: smtp.example\n  usernameFile: ${join(dir, 'u')}\n  passwordFile: ${passwordFile}\n`);
    const result = runMain(['--print-config', '--config', config]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('host: smtp.example');
    expect(result.stdout).toContain(`passwordFile: ${passwordFile}`);
    expect(result.stdout).not.toContain('TOP-SECRET-PASSWORD');
  });

  it('an unknown argument exits 2', () => {
    const result = runMain(['--frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown argument "--frobnicate"/);
  });

  it('with no upstream.host it does not start: exit 2 naming the key', () => {
    const result = runMain([], { SMTPGW_UPSTREAM__HOST: '' });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/upstream\.host: got ""; expected the smarthost/);
  });

  it('--config= with an empty value exits 2', () => {
    const result = runMain(['--config=']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--config=: expected a file name/);
  });

  it('a misspelt SMTPGW_ variable or a hex number exits 2 naming it', () => {
    const result = runMain([], { SMTPGW_UPSTREAM__HOST: 'smtp.example', SMTPGW_LISTEN_ADDR: '0.0.0.0', SMTPGW_POLICY__MAX_RECIPIENTS: '0x10' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('did you mean SMTPGW_LISTEN_ADDRESS?');
    expect(result.stderr).toContain('SMTPGW_POLICY__MAX_RECIPIENTS="0x10" (policy.maxRecipients): expected a decimal number');
  });

  it('start-up errors about a file or an address name the key as well', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-keys-'));
    const missing = join(dir, 'missing.pem');
    const base = { SMTPGW_UPSTREAM__HOST: '127.0.0.1', SMTPGW_UPSTREAM__SECURITY: 'none', SMTPGW_LISTENERS__RELAY__PORT: '0', SMTPGW_OPS__PORT: '0' };
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ SMTPGW_UPSTREAM__CA_FILE: missing }, /upstream\.caFile: cannot read ".*missing\.pem": ENOENT/],
      [{ SMTPGW_LISTEN_ADDRESS: 'no-such-host.invalid' }, /listenAddress "no-such-host\.invalid" \/ listeners\.relay\.port 0: getaddrinfo/],
      [{ SMTPGW_TLS__CERT_FILE: missing, SMTPGW_TLS__KEY_FILE: missing }, /tls\.certFile ".*missing\.pem" \/ tls\.keyFile ".*missing\.pem": .*ENOENT/],
      [{ SMTPGW_AUTH__USERS_FILE: missing }, /auth\.usersFile ".*missing\.pem": .*ENOENT/],
      [{ SMTPGW_OPS__LISTEN_ADDRESS: 'no-such-host.invalid' }, /ops\.listenAddress "no-such-host\.invalid" \/ ops\.port 0: /],
    ];
    for (const [env, expected] of cases) {
      const result = runMain([], { ...base, ...env });
      expect(result.code, JSON.stringify(env)).toBe(2);
      expect(result.stderr, JSON.stringify(env)).toMatch(expected);
    }
  });

  it('with devUpstream.enabled (make run) it relays to the development upstream, which writes an .eml file and logs where', async () => {
    const cwd = await mkdtemp(join(tmpdir(), 'gw-run-'));
    // ports 0 only so suites can run in parallel; everything else is the no-config default
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      cwd: REPO,
      env: { ...cleanEnv(), SMTPGW_DEV_UPSTREAM__ENABLED: 'true', SMTPGW_LISTENERS__RELAY__PORT: '0', SMTPGW_OPS__PORT: '0', SMTPGW_DEV_UPSTREAM__DIR: join(cwd, '.dev-mail'), SMTPGW_DRAIN__DELAY_SECONDS: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const lines: Array<Record<string, unknown>> = [];
    createInterface({ input: child.stdout! }).on('line', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    try {
      const deadline = Date.now() + 20_000;
      while (!lines.some((line) => line.msg === 'listening' && line.listener === 'ops') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const relay = lines.find((line) => line.msg === 'listening' && line.listener === 'relay');
      expect(relay?.address).toBe('127.0.0.1');
      const client = nodemailer.createTransport({ host: '127.0.0.1', port: Number(relay!.port), ignoreTLS: true });
      const info = await client.sendMail({ from: 'dev@example.com', to: 'someone@example.org', subject: 'dev', text: 'to a file' });
      client.close();
      expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as .*\.eml/);
      const files = await readdir(join(cwd, '.dev-mail'));
      expect(files).toHaveLength(1);
      expect(await readFile(join(cwd, '.dev-mail', files[0]), 'utf8')).toContain('to a file');
      expect(lines.find((line) => line.msg === 'dev upstream wrote message')?.file).toBe(join(cwd, '.dev-mail', files[0]));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      // smtp-server warns when it would fall back to its published demo certificate; it must never get there
      expect(stderr).not.toMatch(/default TLS certificate/i);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
