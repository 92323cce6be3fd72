/**
 * upstream.transport ses end to end: a real SMTP client, the gateway, and the
 * AWS SDK talking to aws-ses-v2-local (a real SES v2 endpoint) or to the
 * recording endpoint, which shows what SES would receive (Destination, raw
 * bytes) and answers with SES's own error responses, one case of the error
 * table at a time.
 */
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load';
import { closeAfterEach } from '../../testkit/close-after-each';
import { makeSecretVolume } from '../../testkit/secret-volume';
import { startRecordingSes, type SesAnswer } from '../../testkit/recording-ses';
import { sendMail } from '../../testkit/send-mail';
import { openConnection, startData } from '../../testkit/smtp-client';
import { SES_LOCAL_START_TIMEOUT_MS, startSesLocal } from '../../testkit/ses-local';
import { startTestGateway, type TestGateway } from '../../testkit/test-gateway';

const track = closeAfterEach();

// The SDK's default chain finds these first: it must never look further (instance metadata is not loopback).
const AWS_ENV = { AWS_ACCESS_KEY_ID: 'AKIDTESTONLY', AWS_SECRET_ACCESS_KEY: 'test-secret', AWS_EC2_METADATA_DISABLED: 'true' };
const saved = new Map<string, string | undefined>();
beforeAll(() => {
  for (const key of [...Object.keys(AWS_ENV), 'AWS_PROFILE', 'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_WEB_IDENTITY_TOKEN_FILE']) {
    saved.set(key, process.env[key]);
    delete process.env[key];
  }
  Object.assign(process.env, AWS_ENV);
});
afterAll(() => {
  for (const [key, value] of saved) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

function startSesGateway(endpoint: string, ses: { configurationSet?: string; requestTimeoutMs?: number } = {}): Promise<TestGateway> {
  return startTestGateway({
    upstream: { transport: 'ses', host: '', security: 'starttls', ses: { region: 'eu-west-1', endpoint, ...ses } },
  }).then(track);
}

const MESSAGE = [
  'From: App <app@example.com>',
  'To: user@example.org',
  'Cc: header-only@example.net',
  'Subject: via SES',
  '',
  'first line',
  '.a line that starts with a dot',
  '',
].join('\r\n');

describe('transport ses against aws-ses-v2-local', () => {
  it('sends through the SDK: 250 carries the MessageId SES stored the message under', async () => {
    const ses = track(await startSesLocal());
    const gw = await startSesGateway(ses.endpoint);
    const reply = await sendMail(gw.relayPort, { raw: MESSAGE, to: ['user@example.org'] });
    expect(reply.code).toBe(250);
    const emails = await ses.emails();
    expect(emails).toHaveLength(1);
    expect(reply.response).toBe(`250 2.0.0 Ok: queued as ${emails[0].messageId}`);
    expect(emails[0].subject).toBe('via SES');
    expect(emails[0].from).toContain('app@example.com');
    // its recipients come from the headers (its limit, see ses-local.ts), the body arrives unstuffed
    expect(emails[0].destination.to).toEqual(['user@example.org']);
    expect(emails[0].body.text).toBe('first line\n.a line that starts with a dot\n');
  }, SES_LOCAL_START_TIMEOUT_MS + 30_000);
});

describe('transport ses: what SES receives', () => {
  it('Destination is exactly the envelope (Bcc included, header-only addresses not added); raw is the relayed message', async () => {
    const ses = track(await startRecordingSes());
    const gw = await startSesGateway(ses.endpoint, { configurationSet: 'gateway-events' });
    const envelope = ['user@example.org', 'hidden-bcc@example.com'];
    const reply = await sendMail(gw.relayPort, { from: 'bounces@example.com', to: envelope, raw: MESSAGE });
    expect(reply.code).toBe(250);
    expect(reply.response).toMatch(/^250 2\.0\.0 Ok: queued as 0100019a-rec-\d+-000000$/);
    expect(ses.requests).toHaveLength(1);
    const request = ses.requests[0];
    expect(request.to).toEqual(envelope);
    expect([...request.cc, ...request.bcc]).toEqual([]);
    expect(request.from).toBe('bounces@example.com');
    expect(request.configurationSet).toBe('gateway-events');
    const raw = request.raw.toString('utf8');
    expect(raw).toMatch(/^Received: from \S+ \(unknown \[127\.0\.0\.1\]\)\s+by\s+gateway\.test\s+\(smtp-gateway\)/);
    expect(raw).toMatch(/\r\nMessage-ID: <[^>]+@gateway\.test>\r\n/i);
    expect(raw).toContain('\r\n\r\nfirst line\r\n.a line that starts with a dot\r\n');
    const parsed = await simpleParser(request.raw);
    expect(parsed.subject).toBe('via SES');
  });

  it("an application's configuration set and tags go as request fields, never as X-SES headers", async () => {
    const ses = track(await startRecordingSes());
    const volume = await makeSecretVolume({
      'applications.yaml': 'applications:\n  - name: billing\n    match: { networks: [127.0.0.0/8] }\n    ses: { configurationSet: billing-events, tags: { app: billing } }\n',
    });
    const gw = track(
      await startTestGateway({
        upstream: { transport: 'ses', host: '', security: 'starttls', ses: { region: 'eu-west-1', endpoint: ses.endpoint, configurationSet: 'gateway-events' } },
        applications: { file: volume.path('applications.yaml') },
      }),
    );
    const reply = await sendMail(gw.relayPort, { raw: MESSAGE, to: ['user@example.org'] });
    expect(reply.code).toBe(250);
    expect(ses.requests).toHaveLength(1);
    expect(ses.requests[0].configurationSet).toBe('billing-events');
    expect(ses.requests[0].tags).toEqual([{ Name: 'app', Value: 'billing' }]);
    expect(ses.requests[0].raw.toString('utf8')).not.toMatch(/^X-SES-/im);
  });

  it('a client that leaves during DATA sends nothing to SES', async () => {
    const ses = track(await startRecordingSes());
    const gw = await startSesGateway(ses.endpoint);
    const connection = track(await openConnection(gw.relayPort));
    await startData(connection, 'app@example.com', ['user@example.org']);
    connection.write('Subject: cut off\r\n\r\nhalf a mess');
    connection.destroy();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(ses.requests).toHaveLength(0);
  });
});

interface ErrorCase {
  readonly name: string;
  readonly answer: SesAnswer;
  readonly reply: RegExp;
  readonly reason: string;
  readonly credentialFailure?: boolean;
}

/** The README's SES error table, row by row. */
const ERROR_CASES: ErrorCase[] = [
  {
    name: 'HTTP 429 TooManyRequestsException',
    answer: { kind: 'error', status: 429, type: 'TooManyRequestsException', message: 'Maximum sending rate exceeded.' },
    reply: /^451 4\.7\.0 Upstream deferred the message: Throttling failure: Maximum sending rate exceeded\.$/,
    reason: 'upstream_temporary',
  },
  {
    name: 'HTTP 400 LimitExceededException (daily quota)',
    answer: { kind: 'error', status: 400, type: 'LimitExceededException', message: 'Daily message quota exceeded.' },
    reply: /^451 4\.7\.0 .*Sending quota exceeded: Daily message quota exceeded\.$/,
    reason: 'upstream_temporary',
  },
  {
    name: 'HTTP 400 MessageRejected',
    answer: { kind: 'error', status: 400, type: 'MessageRejected', message: 'Email address is not verified. The following identities failed the check in region EU-WEST-1: user@example.org' },
    reply: /^554 5\.6\.0 Upstream refused the message: Message rejected: Email address is not verified\. .*user@example\.org$/,
    reason: 'upstream_permanent',
  },
  {
    name: 'HTTP 400 MailFromDomainNotVerifiedException',
    answer: { kind: 'error', status: 400, type: 'MailFromDomainNotVerifiedException', message: 'MAIL FROM domain bounce.example.com is not verified.' },
    reply: /^550 5\.7\.1 Upstream refused the message: MAIL FROM domain not verified: MAIL FROM domain bounce\.example\.com is not verified\.$/,
    reason: 'upstream_permanent',
  },
  {
    name: 'HTTP 404 NotFoundException (configuration set)',
    answer: { kind: 'error', status: 404, type: 'NotFoundException', message: 'Configuration set <gateway-events> does not exist.' },
    reply: /^451 4\.3\.5 .*SES resource not found: Configuration set <gateway-events> does not exist\.$/,
    reason: 'upstream_temporary',
  },
  {
    name: 'HTTP 400 AccountSuspendedException',
    answer: { kind: 'error', status: 400, type: 'AccountSuspendedException', message: 'Your account has been suspended.' },
    reply: /^554 5\.7\.0 Upstream refused the message: SES account suspended: Your account has been suspended\.$/,
    reason: 'upstream_permanent',
  },
  {
    name: 'HTTP 400 SendingPausedException',
    answer: { kind: 'error', status: 400, type: 'SendingPausedException', message: 'Sending is paused for this account.' },
    reply: /^451 4\.7\.0 .*Sending paused for this account or configuration set: Sending is paused for this account\.$/,
    reason: 'upstream_temporary',
  },
  {
    name: 'HTTP 403 AccessDeniedException (the pod role lacks ses:SendRawEmail)',
    answer: { kind: 'error', status: 403, type: 'AccessDeniedException', message: 'User is not authorized to perform ses:SendRawEmail' },
    reply: /^451 4\.7\.0 .*SES access denied: User is not authorized to perform ses:SendRawEmail$/,
    reason: 'upstream_temporary',
    credentialFailure: true,
  },
  {
    name: 'HTTP 500 InternalFailure',
    answer: { kind: 'error', status: 500, type: 'InternalFailure', message: 'The request processing has failed because of an unknown error.' },
    reply: /^451 4\.4\.1 .*SES service error \(HTTP 500 InternalFailure\)/,
    reason: 'upstream_temporary',
  },
  {
    name: 'HTTP 503 ServiceUnavailable',
    answer: { kind: 'error', status: 503, type: 'ServiceUnavailable', message: 'Service is unavailable.' },
    reply: /^451 4\.4\.1 .*SES service error \(HTTP 503 ServiceUnavailable\)/,
    reason: 'upstream_temporary',
  },
  { name: 'no answer within requestTimeoutMs', answer: { kind: 'stall' }, reply: /^451 4\.4\.2 Upstream timed out/, reason: 'upstream_timeout' },
  { name: 'connection reset', answer: { kind: 'reset' }, reply: /^451 4\.4\.2 Upstream connection was lost/, reason: 'upstream_connection' },
];

describe('transport ses: SES errors → SMTP replies (never retried by the gateway)', () => {
  for (const testCase of ERROR_CASES) {
    it(testCase.name, async () => {
      const ses = track(await startRecordingSes());
      ses.answer = testCase.answer;
      const gw = await startSesGateway(ses.endpoint, { requestTimeoutMs: 1000 });
      const reply = await sendMail(gw.relayPort);
      expect(reply.response).toMatch(testCase.reply);
      // one request: a retry of a request that may have reached SES could send the message twice
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(ses.requests).toHaveLength(1);
      const metrics = await gw.metricsText();
      const outcome = reply.code >= 500 ? 'rejected' : 'deferred';
      expect(metrics).toContain(`smtp_gateway_messages_total{outcome="${outcome}",reason="${testCase.reason}"} 1`);
      expect(metrics).toContain(`smtp_gateway_upstream_credential_failures_total ${testCase.credentialFailure ? 1 : 0}`);
      if (testCase.credentialFailure) expect(gw.logText()).toContain('upstream refused the gateway credentials');
    });
  }
});

describe('transport ses: configuration is checked at start-up', () => {
  const problems = (upstream: Record<string, unknown>, policy: Record<string, unknown> = {}) => {
    try {
      validateConfig({ upstream: { transport: 'ses', ...upstream }, policy });
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };

  it('needs a region', () => {
    expect(problems({})).toMatch(/upstream\.ses\.region: got missing; upstream\.transport is ses, so upstream\.ses\.region must name the SES region/);
  });

  it('refuses SMTP credential files it would ignore', () => {
    expect(problems({ ses: { region: 'eu-west-1' }, passwordFile: '/etc/smtp-gateway/secrets/upstream-password' })).toMatch(
      /upstream\.passwordFile: got "\/etc\/smtp-gateway\/secrets\/upstream-password"; upstream\.transport is ses/,
    );
  });

  it('refuses a plain-http endpoint that is not loopback', () => {
    expect(problems({ ses: { region: 'eu-west-1', endpoint: 'http://ses.example.com' } })).toMatch(/upstream\.ses\.endpoint: got "http:\/\/ses\.example\.com"; expected an https:\/\/ URL/);
    expect(problems({ ses: { region: 'eu-west-1', endpoint: 'http://127.0.0.1:4566' } })).toBe('');
  });

  it('forwards no ESMTP extension the SES API cannot carry', () => {
    expect(problems({ ses: { region: 'eu-west-1' }, extensions: ['8BITMIME', 'DSN'] })).toMatch(/upstream\.extensions: got \["8BITMIME","DSN"\]; upstream\.transport is ses, which can forward 8BITMIME only .*remove DSN/);
  });

  it('is not combined with the development upstream', () => {
    try {
      validateConfig({ upstream: { transport: 'ses', ses: { region: 'eu-west-1' } }, devUpstream: { enabled: true } });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toMatch(/devUpstream\.enabled: got true; devUpstream\.enabled and upstream\.transport ses exclude each other/);
    }
  });

  it('keeps policy.maxRecipients within the 50 recipients SES takes per message', () => {
    expect(problems({ ses: { region: 'eu-west-1' } }, { maxRecipients: 100 })).toMatch(/policy\.maxRecipients: got 100; expected at most 50 with upstream\.transport ses/);
  });
});

describe('transport ses: TooManyRequests and the account share', () => {
  it('HTTP 429 "Maximum sending rate exceeded.": 451 to the client, counted, and the pod\'s share halves at once', async () => {
    const ses = track(await startRecordingSes());
    const gw = track(
      await startTestGateway({
        upstream: {
          transport: 'ses',
          host: '',
          security: 'starttls',
          ses: { region: 'eu-west-1', endpoint: ses.endpoint },
          accountMaxSendRate: 14,
          accountShare: { source: 'static', peers: 2 },
        },
      }),
    );
    const rate = async () => Number(/^smtp_gateway_upstream_send_rate (\S+)$/m.exec(await gw.metricsText())?.[1]);
    expect(await rate()).toBe(7);
    ses.answer = { kind: 'error', status: 429, type: 'TooManyRequestsException', message: 'Maximum sending rate exceeded.' };
    const reply = await sendMail(gw.relayPort, { raw: MESSAGE });
    expect(reply.code).toBe(451);
    expect(reply.response).toMatch(/^451 4\.7\.0 .*Throttling failure: Maximum sending rate exceeded\./);
    expect(await gw.metricsText()).toMatch(/^smtp_gateway_upstream_throttled_total 1$/m);
    expect(await rate()).toBe(3.5);
    // the daily quota is no rate problem: no slower rate would help, so it is not counted as throttling
    ses.answer = { kind: 'error', status: 400, type: 'LimitExceededException', message: 'Daily message quota exceeded.' };
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await sendMail(gw.relayPort, { raw: MESSAGE })).response).toMatch(/^451 4\.7\.0 .*Sending quota exceeded: Daily message quota exceeded\./);
    expect(await gw.metricsText()).toMatch(/^smtp_gateway_upstream_throttled_total 1$/m);
  });
});
