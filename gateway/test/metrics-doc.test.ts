/**
 * docs/metrics.md against the live gateway: real gateways are started, every event the page
 * documents is driven over real SMTP (relayed, refused by each policy, deferred by each upstream
 * failure, aborted, AUTH, TLS, PROXY and connection limits, each deadline, a drain), /metrics is
 * scraped, and the page's metric names, types and label values are compared with the scrapes in
 * both directions: nothing documented is missing from them, nothing they carry is undocumented.
 * A new documented label value needs a driven event here, or (only for a fault of the gateway
 * itself) an entry in NOT_DRIVABLE saying which code records it.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer, { type SendMailOptions } from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../src/smtp/auth-users';
import { makeTestCertificates, type TestCertificates } from '../../testkit/certs';
import { makeSecretVolume } from '../../testkit/secret-volume';
import { eventually } from '../../testkit/eventually';
import { openConnection, startData, type SmtpConnection } from '../../testkit/smtp-client';
import { startTestGateway, type TestGateway, type TestGatewayOptions } from '../../testkit/test-gateway';
import { startRecordingUpstream, type RecordingUpstream, type RecordingUpstreamOptions } from '../../testkit/recording-upstream';

const DOC = readFileSync(join(__dirname, '../../docs/metrics.md'), 'utf8');
const VERSION = JSON.parse(readFileSync(join(__dirname, '../../package.json'), 'utf8')).version as string;

/**
 * Label values the page documents that no test can make a healthy gateway produce from outside:
 * each is a failure of the gateway itself, recorded by the code named here.
 */
const NOT_DRIVABLE: Record<string, string> = {
  'smtp_gateway_connections_refused_total reason=internal_error': 'listeners.ts: setting up an accepted connection threw',
  'smtp_gateway_messages_total reason=internal_error': 'transaction.ts / session-hooks.ts: the relay itself threw',
};

// --- the page --------------------------------------------------------------------------------------

interface DocMetric {
  type: string;
  labels: string[];
}

/** The rows of "Gateway metrics": name → type and labels. */
function documentedMetrics(): Map<string, DocMetric> {
  const rows = new Map<string, DocMetric>();
  for (const match of DOC.matchAll(/^\| `(smtp_gateway_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|/gm)) {
    rows.set(match[1], { type: match[2], labels: [...match[3].matchAll(/`([a-z_]+)`/g)].map((m) => m[1]).sort() });
  }
  return rows;
}

/** Backticked values of a cell, leaving out what parentheses explain. */
const cellValues = (cell: string) => [...cell.replace(/\([^)]*\)/g, '').matchAll(/`([^`]+)`/g)].map((m) => m[1]);

interface DocLabel {
  /** The label's values, or for messages_total's reason, the values per outcome. */
  values: Set<string>;
  perOutcome?: Map<string, Set<string>>;
  /** Values matched by a rule rather than listed (reply codes, the version). */
  pattern?: RegExp;
}

/** "Label values": `label` (every metric with it) or `label` of `metric`. */
function documentedLabels(): Map<string, DocLabel> {
  const section = DOC.slice(DOC.indexOf('## Label values'), DOC.indexOf('## Process metrics'));
  const labels = new Map<string, DocLabel>();
  for (const [, head, cell] of section.matchAll(/^\| (`[a-z_]+`(?: of `[a-z_]+`)?) \| (.*) \|$/gm)) {
    const [label, metric] = [...head.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]);
    const key = metric ? `smtp_gateway_${metric} ${label}` : label;
    if (metric === 'messages_total' && label === 'reason') {
      const perOutcome = new Map<string, Set<string>>();
      // "with `relayed`: `ok`. With `rejected`: `relay_denied`, … With `aborted`: …"
      const parts = cell.split(/[Ww]ith `(\w+)`:/);
      for (let i = 1; i + 1 < parts.length; i += 2) perOutcome.set(parts[i], new Set(cellValues(parts[i + 1])));
      labels.set(key, { values: new Set([...perOutcome.values()].flatMap((v) => [...v])), perOutcome });
    } else if (label === 'code') {
      labels.set(key, { values: new Set(cellValues(cell).filter((v) => !/^\d{3}$/.test(v) && v !== '…')), pattern: /^[2-5]\d\d$/ });
    } else if (label === 'application') {
      // the names of the applications file: bounded by the configuration, any name it allows
      labels.set(key, { values: new Set(cellValues(cell)), pattern: /^[a-z0-9][a-z0-9_-]{0,62}$/ });
    } else if (label === 'version') {
      labels.set(key, { values: new Set(), pattern: new RegExp(`^${VERSION.replace(/\./g, '\\.')}$`) });
    } else {
      labels.set(key, { values: new Set(cellValues(cell)) });
    }
  }
  return labels;
}

// --- the scrapes -----------------------------------------------------------------------------------

interface Live {
  types: Map<string, string>;
  /** "metric label" → values seen, and "metric reason/outcome" pairs of messages_total. */
  values: Map<string, Set<string>>;
  messageReasons: Map<string, Set<string>>;
}

const live: Live = { types: new Map(), values: new Map(), messageReasons: new Map() };

function addScrape(text: string): void {
  for (const [, name, type] of text.matchAll(/^# TYPE (smtp_gateway_\S+) (\S+)$/gm)) live.types.set(name, type);
  for (const [, sample, labels] of text.matchAll(/^(smtp_gateway_[a-z0-9_]+)\{([^}]*)\} \S+$/gm)) {
    const family = live.types.has(sample) ? sample : sample.replace(/_(bucket|sum|count)$/, '');
    const pairs = Object.fromEntries([...labels.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    for (const [label, value] of Object.entries(pairs)) {
      if (label === 'le') continue;
      const key = `${family} ${label}`;
      if (!live.values.has(key)) live.values.set(key, new Set());
      live.values.get(key)!.add(value);
    }
    if (family === 'smtp_gateway_messages_total') {
      if (!live.messageReasons.has(pairs.outcome)) live.messageReasons.set(pairs.outcome, new Set());
      live.messageReasons.get(pairs.outcome)!.add(pairs.reason);
    }
  }
}

const scrape = async (gw: TestGateway) => addScrape(await (await fetch(`http://127.0.0.1:${gw.opsPort}/metrics`)).text());

// --- driving the events ----------------------------------------------------------------------------

let certs: TestCertificates;
let usersFile: string;
const closers: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close();
});

async function gateway(upstream: RecordingUpstreamOptions | number | undefined, options: Omit<TestGatewayOptions, 'upstreamPort'> = {}) {
  let port: number | undefined = typeof upstream === 'number' ? upstream : undefined;
  if (typeof upstream === 'object') {
    const server: RecordingUpstream = await startRecordingUpstream(upstream);
    closers.push(() => server.close());
    port = server.port;
  }
  const gw = await startTestGateway({ upstreamPort: port, ...options });
  closers.push(() => gw.close());
  return gw;
}

async function dial(port: number, options: Parameters<typeof openConnection>[1] = {}): Promise<SmtpConnection> {
  const connection = await openConnection(port, options);
  closers.push(() => connection.destroy());
  return connection;
}

const send = (port: number, mail: SendMailOptions, transport: Record<string, unknown> = {}) =>
  nodemailer
    .createTransport({ host: '127.0.0.1', port, ignoreTLS: true, ...transport })
    .sendMail({ from: 'app@example.com', to: 'user@example.org', subject: 'metrics', text: 'hello', ...mail })
    .catch((err: Error) => err);

/** Sends each command in turn; the codes of the replies, in order. */
async function codes(connection: SmtpConnection, ...lines: string[]): Promise<number[]> {
  const replies: number[] = [];
  for (const line of lines) replies.push((await connection.command(line)).code);
  return replies;
}

/** Sessions end in the hooks' onClose, a moment after the client's QUIT. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 150));

/** The main gateway: every policy refusal, AUTH, TLS and the aborts. */
async function drivePolicyAuthTls(): Promise<void> {
  const gw = await gateway(
    { rejectRecipient: 'bounce@example.org', deferRecipient: 'later@example.org' },
    {
      tls: { certFile: certs.certFile, keyFile: certs.keyFile },
      listeners: { submission: { enabled: true }, smtps: { enabled: true } },
      auth: { usersFile, maxFailures: 1 },
      policy: {
        allowedNetworks: ['127.0.0.1/32'],
        senderDomains: ['example.com'],
        recipientDomains: { deny: ['denied.example'] },
        maxRecipients: 2,
        maxMessageBytes: 2048,
      },
    },
  );
  const relay = gw.relayPort;
  expect((await send(relay, {})) as { response?: string }).toHaveProperty('response');
  await send(relay, { to: 'bounce@example.org' }); // upstream 550 at RCPT: upstream_permanent
  await send(relay, { to: 'later@example.org' }); // upstream 451 at RCPT: upstream_temporary
  await send(relay, { from: 'someone@other.test', envelope: { from: 'app@example.com', to: ['user@example.org'] } }); // header_from
  await send(relay, { text: 'x'.repeat(4096) }); // message_size

  const [, senderDomain] = await codes(await dial(relay), 'EHLO client.test', 'MAIL FROM:<app@other.test>', 'QUIT');
  expect(senderDomain).toBeGreaterThanOrEqual(500);
  const recipients = await codes(
    await dial(relay),
    'EHLO client.test',
    'MAIL FROM:<app@example.com>',
    'RCPT TO:<x@denied.example>', // recipient_domain
    'RSET', // ends the refused transaction at the next MAIL FROM
    'MAIL FROM:<app@example.com>',
    'RCPT TO:<a@example.org>',
    'RCPT TO:<b@example.org>',
    'RCPT TO:<c@example.org>', // too_many_recipients
    'QUIT',
  );
  expect(recipients[2]).toBeGreaterThanOrEqual(500);
  expect(recipients[7]).toBeGreaterThanOrEqual(400);
  const extensions = await codes(
    await dial(relay),
    'EHLO client.test',
    'MAIL FROM:<app@example.com>',
    'RCPT TO:<a@example.org> NOTIFY=SUCCESS', // unsupported_parameter: DSN is not offered
    'RSET',
    'MAIL FROM:<app@example.com>',
    'RCPT TO:<jürgen@example.org>', // smtputf8_required: a UTF-8 address without SMTPUTF8
    'QUIT',
  );
  expect(extensions[2]).toBe(555);
  expect(extensions[5]).toBe(553);
  const resets = await dial(relay);
  // RSET then MAIL FROM: client_reset; the second transaction is left open
  await codes(resets, 'EHLO client.test', 'MAIL FROM:<app@example.com>', 'RCPT TO:<a@example.org>', 'RSET', 'MAIL FROM:<app@example.com>', 'RCPT TO:<a@example.org>');
  resets.destroy(); // client_disconnect before DATA
  const bare = await dial(relay);
  await startData(bare, 'app@example.com', ['a@example.org']);
  expect((await bare.command('Subject: bare\nline feeds\r\n.')).code).toBeGreaterThanOrEqual(500); // line_endings
  await bare.command('QUIT');
  const cut = await dial(relay);
  await startData(cut, 'app@example.com', ['a@example.org']);
  cut.write('Subject: cut off\r\n\r\nhalf a message');
  await settle();
  cut.destroy(); // aborted during DATA: the message and its recipient
  const outsider = await dial(relay, { localAddress: '127.0.0.2' });
  await outsider.command('EHLO outsider.test');
  await outsider.command('MAIL FROM:<app@example.com>');
  expect((await outsider.command('RCPT TO:<user@example.org>')).code).toBeGreaterThanOrEqual(500); // relay_denied
  await outsider.command('QUIT');

  // submission: 530 before AUTH, then AUTH LOGIN and PLAIN, a failure and the rate limit after it
  const submission = gw.submissionPort!;
  const unauthenticated = await dial(submission);
  await unauthenticated.command('EHLO client.test');
  await unauthenticated.command('STARTTLS');
  await unauthenticated.startTls(certs.ca);
  await unauthenticated.command('EHLO client.test');
  expect((await unauthenticated.command('MAIL FROM:<app@example.com>')).code).toBe(530); // auth_required
  await unauthenticated.command('QUIT');
  const tlsOptions = { requireTLS: true, ignoreTLS: false, tls: { ca: certs.ca, servername: 'localhost' } };
  for (const method of ['LOGIN', 'PLAIN']) {
    const sent = await send(submission, {}, { ...tlsOptions, auth: { user: 'app', pass: 'right-pass' }, authMethod: method });
    expect(sent).toHaveProperty('response');
  }
  for (const pass of ['wrong', 'wrong again']) {
    await send(submission, {}, { ...tlsOptions, auth: { user: 'app', pass }, authMethod: 'PLAIN', localAddress: '127.0.0.3' }); // failure, then rate_limited
  }
  // smtps: a TLS handshake that succeeds and one that does not
  expect(await send(gw.smtpsPort!, {}, { secure: true, tls: { ca: certs.ca, servername: 'localhost' } })).toHaveProperty('response');
  const plainText = await dial(gw.smtpsPort!, { skipGreeting: true });
  plainText.write('EHLO plain.client\r\n');
  await plainText.waitClosed();
  // a PROXY header where PROXY protocol is off
  const proxied = await dial(relay, { preamble: 'PROXY TCP4 10.1.2.3 127.0.0.1 40001 25\r\n', skipGreeting: true });
  await proxied.waitClosed();

  await settle();
  await scrape(gw);
}

/** Connection limits, the message rate limit and an oversized header. */
async function driveLimits(): Promise<void> {
  const gw = await gateway({}, { policy: { allowedNetworks: ['127.0.0.0/8'], maxConnections: 2, maxConnectionsPerIp: 1, messagesPerMinute: 1 } });
  const header = Array.from({ length: 3500 }, (_, i) => `X-Pad-${i}: ${'p'.repeat(80)}`).join('\r\n');
  const big = await dial(gw.relayPort);
  await startData(big, 'app@example.com', ['a@example.org']);
  expect((await big.command(`${header}\r\nSubject: big\r\n\r\nbody\r\n.`)).code).toBe(552); // invalid_message
  await big.command('QUIT');
  await settle();
  const limited = await dial(gw.relayPort);
  await limited.command('EHLO client.test');
  expect((await limited.command('MAIL FROM:<app@example.com>')).code).toBeGreaterThanOrEqual(400); // rate_limited
  const samePeer = await dial(gw.relayPort, { skipGreeting: true });
  expect((await samePeer.reply()).code).toBe(421); // max_per_ip
  await dial(gw.relayPort, { localAddress: '127.0.0.2' });
  const third = await dial(gw.relayPort, { localAddress: '127.0.0.3', skipGreeting: true });
  expect((await third.reply()).code).toBe(421); // max_connections
  await settle();
  await scrape(gw);
}

/** An applications file with unmatched: refuse: a client of no application, one that sets an X-SES header, a reload that fails. */
async function driveApplications(): Promise<void> {
  const volume = await makeSecretVolume({ 'applications.yaml': 'applications:\n  - name: cron\n    match: { networks: [127.0.0.1/32] }\n' });
  const gw = await gateway({}, { policy: { allowedNetworks: ['127.0.0.0/8'] }, applications: { file: volume.path('applications.yaml'), unmatched: 'refuse' } });
  const [, noApplication] = await codes(await dial(gw.relayPort, { localAddress: '127.0.0.2' }), 'EHLO client.test', 'MAIL FROM:<app@example.com>', 'QUIT');
  expect(noApplication).toBe(550); // no_application
  const ses = await dial(gw.relayPort);
  await startData(ses, 'app@example.com', ['a@example.org']);
  expect((await ses.command('X-SES-CONFIGURATION-SET: other\r\nSubject: s\r\n\r\nbody\r\n.')).code).toBe(550); // ses_header
  await volume.update({ 'applications.yaml': 'applications: [' });
  await eventually(async () => /application_reloads_total\{result="failure"\} 1/.test(await gw.metricsText()), 'the failed reload');
  await volume.update({ 'applications.yaml': 'applications: []\n' });
  await eventually(async () => /application_reloads_total\{result="success"\} 1/.test(await gw.metricsText()), 'the reload');
  await settle();
  await scrape(gw);
}

/** PROXY protocol from a trusted peer: a malformed header, and none at all until the timeout. */
async function driveProxy(): Promise<void> {
  const gw = await gateway({}, { proxyProtocol: { enabled: true, trustedNetworks: ['127.0.0.1/32'] } });
  const silent = await dial(gw.relayPort, { skipGreeting: true });
  const malformed = await dial(gw.relayPort, { preamble: 'EHLO no-proxy-header\r\n', skipGreeting: true });
  await malformed.waitClosed();
  await silent.waitClosed(10_000); // proxy_timeout, after the listener's 5 s
  await scrape(gw);
}

/** The upstream stalls past upstream.socketTimeoutMs; then one that is not there; then one that is not SMTP. */
async function driveUpstreamFailures(): Promise<void> {
  const stalled = await gateway({ stallRate: 1 }, { upstream: { socketTimeoutMs: 500 } });
  await send(stalled.relayPort, {});
  await scrape(stalled);

  // one message per 2 s and a 1 s bound: of two at once, the second waits out its bound (upstream_wait)
  const slow = await gateway({}, { upstream: { messagesPerSecond: 0.5, maxWaitSeconds: 1 } });
  await Promise.all([send(slow.relayPort, {}), send(slow.relayPort, {})]);
  await scrape(slow);

  const closed: Server = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const closedPort = (closed.address() as AddressInfo).port;
  closed.close();
  const absent = await gateway(closedPort);
  await send(absent.relayPort, {});
  await scrape(absent);

  const notSmtp = createServer((socket) => socket.end('hello, this is not SMTP\r\n'));
  await new Promise<void>((resolve) => notSmtp.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => notSmtp.close(resolve)));
  const garbled = await gateway((notSmtp.address() as AddressInfo).port);
  await send(garbled.relayPort, {});
  await scrape(garbled);
}

/** Each inbound deadline expiring, on a gateway of its own where only that one is short. */
async function driveDeadlines(): Promise<void> {
  const long = { firstCommandSeconds: 30, commandSeconds: 30, authOrMailSeconds: 30, dataGraceSeconds: 30, dataMinBytesPerSecond: 1, dataMaxSeconds: 30, sessionMaxSeconds: 60 };
  const expire = async (short: Partial<typeof long> & { maxCommands?: number }, drive: (connection: SmtpConnection) => Promise<unknown>) => {
    const gw = await gateway({}, { deadlines: { ...long, ...short } });
    const connection = await dial(gw.relayPort);
    await drive(connection);
    await connection.waitClosed(10_000);
    await settle();
    await scrape(gw);
  };
  const ehlo = (connection: SmtpConnection) => connection.command('EHLO client.test');
  await Promise.all([
    expire({ firstCommandSeconds: 1 }, async () => undefined), // first_command
    expire({ commandSeconds: 1 }, ehlo), // command
    expire({ authOrMailSeconds: 1 }, ehlo), // auth_or_mail
    expire({ sessionMaxSeconds: 1 }, ehlo), // session
    expire({ dataGraceSeconds: 1, dataMinBytesPerSecond: 100_000 }, (connection) => startData(connection, 'app@example.com', ['a@example.org'])), // data_rate
    expire({ dataMaxSeconds: 1 }, (connection) => startData(connection, 'app@example.com', ['a@example.org'])), // data_total
    expire({ maxCommands: 10 }, (connection) => codes(connection, ...Array.from({ length: 11 }, () => 'NOOP'))), // commands
  ]);
}

/** A message the spool has no room for (spool_full), and a partial refusal that sends a DSN. */
async function driveSpool(): Promise<void> {
  const gw = await gateway({ rejectRecipient: 'bounce@example.org' }, { spool: { memoryThresholdBytes: 1024, maxBytes: 4096 } });
  expect(((await send(gw.relayPort, { text: 'x'.repeat(16 * 1024) })) as { responseCode?: number }).responseCode).toBe(452); // spool_full
  await send(gw.relayPort, { to: ['user@example.org', 'bounce@example.org'] }); // dsn_total sent
  await scrape(gw);
}

/** A drain whose grace runs out while the upstream still holds a message. */
async function driveShutdown(): Promise<void> {
  const upstream = await startRecordingUpstream({ replyDelayMs: 5000 });
  closers.push(() => upstream.close());
  const gw = await gateway(upstream.port, { drain: { delaySeconds: 0, graceSeconds: 0 }, upstream: { socketTimeoutMs: 10_000 } });
  const sending = send(gw.relayPort, {});
  await eventually(() => upstream.attempts.some((attempt) => attempt.completed), 'the message reached the upstream');
  await gw.gateway.drain();
  expect(((await sending) as { responseCode?: number }).responseCode).toBe(451);
  // the ops server closed with the drain; the registry it served is read directly
  addScrape(await gw.metricsText());
}

beforeAll(async () => {
  certs = await makeTestCertificates();
  const dir = await mkdtemp(join(tmpdir(), 'gw-metrics-doc-'));
  usersFile = join(dir, 'users');
  await writeFile(usersFile, `app:${await hashPassword('right-pass', { N: 1024 })}\n`);
  await Promise.all([drivePolicyAuthTls(), driveLimits(), driveProxy(), driveUpstreamFailures(), driveShutdown(), driveDeadlines(), driveSpool(), driveApplications()]);
}, 60_000);

// --- the comparison --------------------------------------------------------------------------------

describe('docs/metrics.md against live scrapes', () => {
  it('names every smtp_gateway_ metric the gateway exports, with its type, and no other', () => {
    const documented = documentedMetrics();
    expect([...documented.keys()].sort()).toEqual([...live.types.keys()].sort());
    for (const [name, row] of documented) expect(row.type, name).toBe(live.types.get(name));
  });

  it('names the labels each metric carries', () => {
    for (const [name, row] of documentedMetrics()) {
      const seen = [...live.values.keys()].filter((key) => key.startsWith(`${name} `)).map((key) => key.split(' ')[1]);
      expect(row.labels, name).toEqual(expect.arrayContaining(seen));
      expect(seen.sort(), `${name}: every documented label is in the scrape`).toEqual(row.labels);
    }
  });

  const labels = documentedLabels();
  /** The documentation of one metric's label: its own row, or the shared row of the label. */
  const docFor = (metric: string, label: string) => labels.get(`${metric} ${label}`) ?? labels.get(label);

  it('documents every label value the scrapes carry', () => {
    const undocumented: string[] = [];
    for (const [key, values] of live.values) {
      const [metric, label] = key.split(' ');
      const doc = docFor(metric, label);
      if (!doc) {
        undocumented.push(`${key} (no row)`);
        continue;
      }
      for (const value of values) if (!doc.values.has(value) && !doc.pattern?.test(value)) undocumented.push(`${key}=${value}`);
    }
    expect(undocumented).toEqual([]);
    // and each reason of messages_total only with the outcome the page gives it
    const perOutcome = labels.get('smtp_gateway_messages_total reason')!.perOutcome!;
    for (const [outcome, reasons] of live.messageReasons) {
      for (const reason of reasons) expect(perOutcome.get(outcome), `${outcome}/${reason}`).toContain(reason);
    }
  });

  it('every label value it documents was produced by a driven event (or is a gateway fault, named)', () => {
    const missing: string[] = [];
    for (const [key, doc] of labels) {
      const [metric, label] = key.includes(' ') ? key.split(' ') : [undefined, key];
      const seen = new Set(
        [...live.values].filter(([k]) => (metric ? k === key : k.endsWith(` ${label}`) && !labels.has(k))).flatMap(([, values]) => [...values]),
      );
      for (const value of doc.values) {
        if (seen.has(value) || NOT_DRIVABLE[`${key}=${value}`]) continue;
        missing.push(`${key}=${value}`);
      }
      if (doc.pattern) expect([...seen].some((value) => doc.pattern!.test(value)), `${key} matching ${doc.pattern}`).toBe(true);
    }
    expect(missing).toEqual([]);
  });

  it('the page parses as this test expects (the comparison can fail)', () => {
    expect(documentedMetrics().size).toBeGreaterThan(10);
    const reasons = labels.get('smtp_gateway_messages_total reason')!;
    expect([...reasons.perOutcome!.keys()].sort()).toEqual(['aborted', 'deferred', 'rejected', 'relayed']);
    expect(reasons.perOutcome!.get('rejected')).toContain('auth_required');
    expect(labels.get('mechanism')!.values).toEqual(new Set(['plain', 'login']));
    expect(labels.get('code')!.values).toEqual(new Set(['timeout', 'connection_error', 'protocol_error']));
    expect(labels.get('smtp_gateway_connections_refused_total reason')!.values.has('draining')).toBe(false);
  });
});
