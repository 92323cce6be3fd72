/**
 * The pooled SMTP transport to the smarthost (nodemailer's SMTPPool). The message
 * goes in as a raw stream and is streamed out as it arrives; aborting the signal
 * closes the upstream connection so a half-sent message never gets its final dot.
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
import { installFastDotStuffing } from './dot-stuffing';
import type { UpstreamError, UpstreamInfo } from './reply-mapping';
import { type EnvelopeParameters, installEnvelopeParameters, withParameters } from './upstream-parameters';

installFastDotStuffing();
installEnvelopeParameters();

/**
 * The application a message was sent by (smtp/application-policy.ts), as every
 * transport receives it: the SES API sends `configurationSet` and `tags` as
 * ConfigurationSetName and EmailTags; SES over SMTP takes them as headers
 * (relay/ses-headers.ts), added when the upstream says `applicationHeaders`.
 */
export interface ApplicationContext {
  /** The application's name in the applications file (also the metrics label). */
  readonly name: string;
  /** SES configuration set for its messages; absent leaves the transport's own default. */
  readonly configurationSet?: string;
  /** SES message tags (name → value), for attributing sends, bounces and complaints. */
  readonly tags?: Readonly<Record<string, string>>;
}

export interface Envelope {
  readonly from: string;
  readonly to: readonly string[];
  /** ESMTP parameters to forward (BODY, SMTPUTF8, DSN); the connection sends exactly these or fails the message. */
  readonly parameters?: EnvelopeParameters;
  /** The sending application, when the applications file names one for the session. */
  readonly application?: ApplicationContext;
}

export interface Upstream {
  /** Sends one message; resolves with the upstream's reply to the final dot. */
  send(envelope: Envelope, raw: Readable, signal: AbortSignal): Promise<UpstreamInfo>;
  /**
   * True when the upstream takes the application's configuration set and tags
   * as X-SES-* headers in the message (SES over SMTP); false when it reads
   * `envelope.application` itself (the SES API).
   */
  readonly applicationHeaders: boolean;
  /** The nodemailer transporter (for the pool metrics). */
  readonly transport: unknown;
  /** Closes idle connections; `force` also drops connections in the middle of a message. */
  close(force?: boolean): void;
}

export type UpstreamSettings = GatewayConfig['upstream'] & {
  /** Name used in the EHLO to the upstream. */
  readonly clientName?: string;
};

export function createUpstream(settings: UpstreamSettings): Upstream {
  const transport = new SMTPPool(transportOptions(settings));
  transport.on('error', () => undefined);
  return {
    applicationHeaders: true,
    transport,
    send(envelope, raw, signal) {
      return new Promise<UpstreamInfo>((resolve, reject) => {
        transport.send(poolMessage(envelope, raw, signal), (err, info) => {
          if (err) reject(err);
          else resolve(info ?? {});
        });
      });
    },
    close(force = false) {
      transport.close({ force });
    },
  };
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
function poolMessage(envelope: Envelope, raw: Readable, signal: AbortSignal): MailMessage<never> {
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
      createReadStream: () => handOff(raw, () => deferral(attempt)),
    },
  } as unknown as MailMessage<never>;
}

/**
 * A recipient the upstream refused for now (4xx at RCPT) would lose the message
 * if the others got it and the client heard 250: SMTP cannot defer one recipient
 * after DATA. The whole attempt fails before any data instead (451, no dot), so
 * the client's retry reaches everyone. Permanent refusals are reported in the
 * 250 instead (reply-mapping.ts): retrying cannot help those.
 */
function deferral(attempt: AttemptEnvelope | undefined): Error | undefined {
  const deferred = attempt?.rejectedErrors?.find((err) => (err.responseCode ?? 0) >= 400 && (err.responseCode ?? 0) < 500);
  if (!deferred) return undefined;
  // 451 rather than the upstream's own code: a 421 would make the pool retry it on another connection
  return Object.assign(new Error('upstream deferred a recipient'), { responseCode: 451, response: deferred.response });
}

/**
 * A fresh stream per delivery attempt that starts reading `raw` only once the
 * pool starts sending the data. When a reused pooled connection turns out to be
 * closed by the smarthost, the pool destroys the attempt's stream and requeues
 * the message on another connection; `raw` must still be whole for that retry.
 * nodemailer starts reading after the upstream's 354, with every RCPT reply in:
 * `refusal` decides then whether the data may go at all.
 */
function handOff(raw: Readable, refusal: () => Error | undefined): Readable {
  const out = new PassThrough();
  const forwardError = (err: Error) => out.destroy(err);
  raw.once('error', forwardError);
  out.once('resume', () => {
    const refused = refusal();
    if (refused) out.destroy(refused);
    else raw.pipe(out);
  });
  out.once('close', () => {
    raw.unpipe(out);
    raw.removeListener('error', forwardError);
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
