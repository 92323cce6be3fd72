/**
 * The SMTP `Upstream` (upstream.ts): nodemailer's pooled SMTP transport to the
 * smarthost. A message goes out only once it is whole in the spool, so a
 * pooled connection is busy only while the message moves at the smarthost's
 * speed; aborting the signal closes the connection before the final dot.
 *
 * Messages are handed to the pool directly rather than through
 * `transport.sendMail({ raw })`: the message is already complete, and sendMail's
 * per-message MIME compile step (a MimeNode, a generated Message-ID, plugin
 * passes) was about a tenth of the gateway's CPU per message. The pool reads
 * only the envelope, the stream and the signal from what it is given.
 */
import { readFileSync } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import type { SMTPPoolOptions } from 'nodemailer';
import type { MailMessage } from 'nodemailer/lib/mailer';
import SMTPPool from 'nodemailer/lib/smtp-pool';
import type { GatewayConfig } from '../config/schema';
import { nodemailerPoolSnapshot } from '../ops/upstream-pool';
import { installFastDotStuffing } from './dot-stuffing';
import type { UpstreamError } from './reply-mapping';
import type { Envelope, RecipientRefusal, SpooledMessage, Upstream, UpstreamAcceptance } from './upstream';
import { installEnvelopeParameters, withParameters } from './upstream-parameters';

installFastDotStuffing();
installEnvelopeParameters();

export type UpstreamSettings = GatewayConfig['upstream'] & {
  /** Name used in the EHLO to the upstream. */
  readonly clientName?: string;
};

/** What nodemailer reports for a sent message (the fields used here). */
interface PoolInfo {
  readonly response?: string;
  readonly rejectedErrors?: ReadonlyArray<UpstreamError & { recipient?: string }>;
}

export function createSmtpUpstream(settings: UpstreamSettings): Upstream {
  const transport = new SMTPPool(transportOptions(settings));
  transport.on('error', () => undefined);
  return {
    remoteName: settings.host,
    send(envelope, message, signal) {
      return new Promise<UpstreamAcceptance>((resolve, reject) => {
        transport.send(poolMessage(envelope, message, signal), (err, info) => {
          if (err) reject(err);
          else resolve(acceptance(info as PoolInfo | undefined));
        });
      });
    },
    poolSnapshot: () => nodemailerPoolSnapshot(transport),
    close(force = false) {
      transport.close({ force });
    },
  };
}

function acceptance(info: PoolInfo | undefined): UpstreamAcceptance {
  const rejected: RecipientRefusal[] = (info?.rejectedErrors ?? []).map((err) => ({
    address: String(err.recipient ?? ''),
    code: err.responseCode ?? 550,
    reply: (err.response ?? '').toString().trim(),
  }));
  return { response: (info?.response ?? '250').toString(), rejected };
}

/** Reads a secret file; a missing or empty file is a start-up error that names the key and path. */
function readSecret(key: string, file: string): string {
  const value = readSetting(key, file).toString('utf8').trim();
  if (!value) throw new Error(`upstream.${key}: ${JSON.stringify(file)} is empty`);
  return value;
}

/** Reads the file an upstream.* key names; a start-up error names the key and path. */
function readSetting(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`upstream.${key}: cannot read ${JSON.stringify(file)}: ${(err as Error).message}`);
  }
}

/** The envelope of one delivery attempt, as nodemailer's connection fills it in. */
interface AttemptEnvelope {
  readonly from: string;
  readonly to: string[];
  rejectedErrors?: UpstreamError[];
}

/** The part of a nodemailer MailMessage the pool reads for a ready-made message. */
function poolMessage(envelope: Envelope, spooled: SpooledMessage, signal: AbortSignal): MailMessage<never> {
  // a fresh object per attempt: the connection records the replies (mailError,
  // rejected recipients) on the envelope it is given, and a requeued message must
  // not carry the refusals of the connection it was requeued from
  const smtpEnvelope = (): AttemptEnvelope => withParameters({ from: envelope.from, to: [...envelope.to] }, envelope.parameters);
  let attempt: AttemptEnvelope | undefined;
  return {
    data: { envelope: smtpEnvelope(), signal },
    message: {
      getEnvelope: () => (attempt = smtpEnvelope()),
      messageId: () => '',
      getHeader: () => '',
      createReadStream: () => handOff(spooled, () => deferral(attempt)),
    },
  } as unknown as MailMessage<never>;
}

/**
 * A recipient the upstream refused for now (4xx at RCPT) would lose the message
 * if the others got it and the client heard 250: SMTP cannot defer one recipient
 * after DATA. The whole attempt fails before any data instead (451, no dot), so
 * the client's retry reaches everyone exactly once (RELIABILITY.md, "No
 * recipient is silently dropped"). Permanent refusals go on: retrying cannot
 * help those, and the sender is told of them by a delivery status notification.
 */
function deferral(attempt: AttemptEnvelope | undefined): Error | undefined {
  const deferred = attempt?.rejectedErrors?.find((err) => (err.responseCode ?? 0) >= 400 && (err.responseCode ?? 0) < 500);
  if (!deferred) return undefined;
  // 451 rather than the upstream's own code: a 421 would make the pool retry it on another connection
  return Object.assign(new Error('upstream deferred a recipient'), { responseCode: 451, response: deferred.response });
}

/**
 * A stream per delivery attempt that opens the spooled message only once the
 * pool starts sending the data (a requeued attempt opens it again from the
 * start). nodemailer starts reading after the upstream's 354, with every RCPT
 * reply in: `refusal` decides then whether the data may go at all.
 */
function handOff(spooled: SpooledMessage, refusal: () => Error | undefined): Readable {
  const out = new PassThrough();
  out.once('resume', () => {
    const refused = refusal();
    if (refused) return void out.destroy(refused);
    const source = spooled.open();
    source.once('error', (err) => out.destroy(err));
    out.once('close', () => source.destroy());
    source.pipe(out);
  });
  return out;
}

export function transportOptions(settings: UpstreamSettings): SMTPPoolOptions & { pool: true } {
  const rate = rateLimit(settings.messagesPerSecond);
  const auth =
    settings.usernameFile || settings.passwordFile
      ? { user: readSecret('usernameFile', settings.usernameFile), pass: readSecret('passwordFile', settings.passwordFile) }
      : undefined;
  return {
    pool: true,
    host: settings.host,
    port: settings.port,
    name: settings.clientName || undefined,
    secure: settings.security === 'tls',
    requireTLS: settings.security === 'starttls',
    ignoreTLS: settings.security === 'none',
    auth,
    tls: {
      rejectUnauthorized: settings.rejectUnauthorized,
      minVersion: 'TLSv1.2',
      ca: settings.caFile ? readSetting('caFile', settings.caFile) : undefined,
      servername: settings.host,
    },
    connectionTimeout: settings.connectionTimeoutMs,
    greetingTimeout: settings.connectionTimeoutMs,
    socketTimeout: settings.socketTimeoutMs,
    // an aborted message's connection is destroyed, not ended: nothing queued for it is flushed
    socketCloseTimeout: 0,
    dnsTimeout: settings.connectionTimeoutMs,
    maxConnections: settings.maxConnections,
    maxMessages: settings.maxMessagesPerConnection,
    ...rate,
    logger: false,
    debug: false,
  };
}

/** SES-style "N messages per second" as nodemailer's messages-per-window pair. */
function rateLimit(messagesPerSecond: number): { rateLimit?: number; rateDelta?: number } {
  if (messagesPerSecond <= 0) return {};
  if (messagesPerSecond >= 1) return { rateLimit: Math.floor(messagesPerSecond), rateDelta: 1000 };
  return { rateLimit: 1, rateDelta: Math.round(1000 / messagesPerSecond) };
}
