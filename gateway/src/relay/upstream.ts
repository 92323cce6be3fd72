/**
 * The seam between the gateway and whatever carries a message on: the gateway
 * receives a message whole into the spool, then hands it to an `Upstream`,
 * which sends it at the upstream's speed and resolves with the upstream's
 * acceptance. smtp-upstream.ts is the SMTP implementation (nodemailer's pool);
 * another transport (e.g. an API) implements the same interface beside it.
 *
 * The contract every implementation keeps:
 * - resolve only once the upstream has taken responsibility for the message,
 *   with the recipients it refused permanently (the gateway notifies the
 *   sender of those, dsn.ts);
 * - reject with an `UpstreamError` otherwise; reply-mapping.ts turns it into
 *   the client's reply. A recipient refused only for now must fail the whole
 *   message before anyone gets it (the client's retry then reaches everyone
 *   exactly once);
 * - `message.open()` may be called again for a retry on another connection: a
 *   spooled message can be read any number of times;
 * - when `signal` aborts, stop without completing the message (no final dot).
 */
import type { Readable } from 'node:stream';
import type { UpstreamPoolSnapshot } from '../ops/metrics';
import type { EnvelopeParameters } from './upstream-parameters';

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

/** A message received whole, as it will be sent (headers already rewritten). */
export interface SpooledMessage {
  /** Bytes in the message. */
  readonly size: number;
  /** A new stream over the message from its first byte. */
  open(): Readable;
  /** The whole message in memory (for transports that need it so; reads the spool file if it spilled). */
  buffer(): Promise<Buffer>;
}

/**
 * How a send fails: nodemailer's error fields, which ses-errors.ts gives SES
 * errors too; reply-mapping.ts turns it into the client's reply.
 */
export interface UpstreamError {
  readonly code?: string;
  readonly responseCode?: number;
  readonly response?: string;
  readonly message?: string;
}

/** A recipient the upstream refused while it took the message for the others. */
export interface RecipientRefusal {
  readonly address: string;
  /** The upstream's reply code, e.g. 550. */
  readonly code: number;
  /** The upstream's reply line, e.g. "550 5.1.1 <x@example.org>: no such user". */
  readonly reply: string;
}

/** The upstream took the message. */
export interface UpstreamAcceptance {
  /** The upstream's reply to the end of the message, e.g. "250 Ok: queued as 4Fx9". */
  readonly response: string;
  /** Recipients refused permanently; empty when everyone was accepted. */
  readonly rejected: readonly RecipientRefusal[];
}

export interface Upstream {
  /** Where messages go, for logs and the Remote-MTA of a delivery status notification. */
  readonly remoteName: string;
  /**
   * True when the upstream takes the application's configuration set and tags
   * as X-SES-* headers in the message (SES over SMTP); false when it reads
   * `envelope.application` itself (the SES API).
   */
  readonly applicationHeaders: boolean;
  /** Sends one message; resolves once the upstream accepted it, rejects with an UpstreamError. */
  send(envelope: Envelope, message: SpooledMessage, signal: AbortSignal): Promise<UpstreamAcceptance>;
  /** Connections in use, idle and messages waiting, for smtp_gateway_upstream_pool; undefined when not pooled. */
  poolSnapshot(): UpstreamPoolSnapshot | undefined;
  /** Closes idle connections; `force` also drops connections in the middle of a message. */
  close(force?: boolean): void;
}

/** What a transport reports about the gateway's own credentials (gateway.ts logs and counts it). */
export interface UpstreamHooks {
  /** The upstream refused the gateway's own credentials (SMTP AUTH, or the AWS credentials for SES). */
  readonly onCredentialFailure?: (error: Error) => void;
  /** The credential files changed and new connections use the new values. */
  readonly onCredentialsReloaded?: () => void;
  /** The credential files changed but cannot be used; the values in use stay. */
  readonly onCredentialsError?: (error: Error) => void;
  /** How often the credential files are re-read without a file system event. @default watchFiles' default */
  readonly credentialPollMs?: number;
}
