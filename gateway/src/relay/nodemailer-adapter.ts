/**
 * Everything the gateway takes from nodemailer beyond its documented API, in
 * one place, against one exactly pinned release (package.json):
 * - messages go to SMTPPool#send as ready-made messages (no sendMail, whose
 *   per-message MIME compile was a tenth of the CPU): the pool reads only the
 *   envelope, the data stream and the signal of what it is given;
 * - the pool's busy, idle and queued counts come from its `_connections` and
 *   `_queue` (its public API has only pendingCount);
 * - DataStream's _transform and _flush become the gateway's dot-stuffing
 *   (dot-stuffing.ts): faster, and the final dot leaves with the data;
 * - SMTPConnection's _setEnvelope and _sendCommand carry the client's ESMTP
 *   parameters exactly (upstream-parameters.ts) instead of nodemailer's guesses.
 *
 * A release that renames any of these fails at startup with a message naming
 * this file, never silently: gateway/test/nodemailer-adapter.test.ts is the
 * contract with the installed release.
 */
import { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';
import SMTPPool, { type SMTPPoolOptions } from 'nodemailer/lib/smtp-pool';
import type { UpstreamPoolSnapshot } from '../ops/metrics';
import { dotStuffingFlush, dotStuffingTransform } from './dot-stuffing';
import type { SpooledMessage, UpstreamError } from './upstream';
import { commandWithParameters, type EnvelopeParameters, missingExtensionError, requiredExtensions } from './upstream-parameters';

export type PoolOptions = SMTPPoolOptions;

/** How nodemailer reports a failed send, or a refused recipient (then with `recipient`). */
export type PoolError = UpstreamError & { readonly recipient?: string };

/** The upstream took the message: its reply to the dot, and the recipients it refused at RCPT. */
export interface PoolDelivery {
  readonly response: string;
  readonly rejected: readonly PoolError[];
}

export interface PoolMessage {
  readonly from: string;
  readonly to: readonly string[];
  readonly parameters?: EnvelopeParameters;
  readonly message: SpooledMessage;
  /**
   * Asked after the upstream's 354, with the recipients it refused on this
   * attempt: an error here ends the attempt before a byte of data is sent.
   */
  readonly beforeData?: (rejected: readonly PoolError[]) => Error | undefined;
  /** Aborting closes the connection before the final dot. */
  readonly signal: AbortSignal;
}

/** Messages up to this size go to the upstream as one buffer; larger ones are streamed. */
const ONE_BUFFER_MAX_BYTES = 256 * 1024;

/** nodemailer's pooled SMTP transport, as the gateway uses it. */
export class NodemailerPool {
  private readonly pool: SMTPPool;
  private readonly internals: PoolInternals;

  constructor(options: PoolOptions) {
    installPatches();
    this.pool = new SMTPPool(options);
    this.internals = poolInternals(this.pool);
    // each send reports its own failure; the pool's 'error' event repeats it
    this.pool.on('error', () => undefined);
  }

  send(message: PoolMessage): Promise<PoolDelivery> {
    return new Promise((resolve, reject) => {
      this.pool.send(readyMade(message) as never, (err, info) => {
        if (err) return reject(err);
        const sent = info as { response?: unknown; rejectedErrors?: PoolError[] } | undefined;
        resolve({ response: String(sent?.response ?? '250'), rejected: sent?.rejectedErrors ?? [] });
      });
    });
  }

  /** Connections sending, connections idle, messages waiting for a connection. */
  snapshot(): UpstreamPoolSnapshot {
    const { _connections: connections, _queue: queue } = this.internals;
    const idle = connections.filter((connection) => connection.available).length;
    return { active: connections.length - idle, idle, queued: queue.length };
  }

  /** Options for connections opened from now on (those open keep theirs). */
  updateOptions(options: Partial<PoolOptions>): void {
    Object.assign(this.pool.options, options);
  }

  /** Closes idle connections; `force` also drops connections in the middle of a message. */
  close(force = false): void {
    this.pool.close({ force });
  }
}

/** The pool's private state read by snapshot(). */
interface PoolInternals {
  readonly _connections: Array<{ available: boolean }>;
  readonly _queue: unknown[];
}

function poolInternals(pool: SMTPPool): PoolInternals {
  const internals = pool as unknown as Partial<PoolInternals>;
  for (const name of ['_connections', '_queue'] as const) {
    if (!Array.isArray(internals[name])) {
      throw new Error(`nodemailer SMTPPool has no ${name} array: this nodemailer release is not supported (relay/nodemailer-adapter.ts)`);
    }
  }
  return internals as PoolInternals;
}

/** The envelope of one delivery attempt, as nodemailer's connection fills it in. */
interface AttemptEnvelope {
  readonly from: string;
  readonly to: string[];
  readonly [PARAMETERS]?: EnvelopeParameters;
  rejectedErrors?: PoolError[];
}

const PARAMETERS = Symbol('smtp-gateway envelope parameters');

/** The part of a nodemailer MailMessage the pool reads. */
function readyMade(message: PoolMessage) {
  // a fresh envelope per attempt: the connection records its replies (mailError,
  // refused recipients) on it, and a message requeued to another connection must
  // not carry the refusals of the first
  const envelope = (): AttemptEnvelope => ({ from: message.from, to: [...message.to], [PARAMETERS]: message.parameters });
  let attempt: AttemptEnvelope | undefined;
  return {
    data: { envelope: envelope(), signal: message.signal },
    message: {
      getEnvelope: () => (attempt = envelope()),
      messageId: () => '',
      getHeader: () => '',
      createReadStream: () => new MessageData(message.message, () => message.beforeData?.(attempt?.rejectedErrors ?? [])),
    },
  };
}

/**
 * The data of one attempt. The connection pipes it only after the upstream's
 * 354, with every RCPT reply in, so the spooled message is opened (again from
 * its start, for an attempt requeued to another connection) on the first read.
 * A small message goes as one buffer: one stream object fewer, and one write.
 */
class MessageData extends Readable {
  private opened = false;
  private source?: Readable;

  constructor(
    private readonly message: SpooledMessage,
    private readonly refusal: () => Error | undefined,
  ) {
    super();
  }

  override _read(): void {
    if (this.source) return void this.source.resume();
    if (this.opened) return;
    this.opened = true;
    const refused = this.refusal();
    if (refused) return void this.destroy(refused);
    if (this.message.size <= ONE_BUFFER_MAX_BYTES) {
      this.message.buffer().then(
        (data) => {
          if (this.destroyed) return;
          if (data.length) this.push(data);
          this.push(null);
        },
        (err: Error) => this.destroy(err),
      );
      return;
    }
    const source = (this.source = this.message.open());
    source.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) source.pause();
    });
    source.once('end', () => this.push(null));
    source.once('error', (err) => this.destroy(err));
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.source?.destroy();
    callback(err);
  }
}

/** The internals of nodemailer's SMTPConnection the envelope parameters rely on. */
interface ConnectionInternals {
  _supportedExtensions: string[];
  _envelope?: AttemptEnvelope;
  _setEnvelope(envelope: AttemptEnvelope, callback: (err: Error | null) => void): void;
  _sendCommand(str: string, logStr?: string): void;
}

type Method = (...args: never[]) => unknown;

/** Names the missing internal, so an unsupported release stops the gateway at startup. */
function internal<T extends Method>(owner: object, name: string, what: string): T {
  const value = (owner as Record<string, unknown>)[name];
  if (typeof value !== 'function') {
    throw new Error(`nodemailer ${what} has no ${name}: this nodemailer release is not supported (relay/nodemailer-adapter.ts)`);
  }
  return value as T;
}

let installed = false;

/** Patches nodemailer once, before the first pool; throws if the release lacks what is patched. */
export function installPatches(): void {
  if (installed) return;
  const dataStream = DataStream.prototype as unknown as Record<string, unknown>;
  internal(dataStream, '_transform', 'DataStream');
  internal(dataStream, '_flush', 'DataStream');
  const connection = SMTPConnection.prototype as unknown as ConnectionInternals;
  const setEnvelope = internal<ConnectionInternals['_setEnvelope']>(connection, '_setEnvelope', 'SMTPConnection');
  const sendCommand = internal<ConnectionInternals['_sendCommand']>(connection, '_sendCommand', 'SMTPConnection');

  dataStream._transform = dotStuffingTransform;
  dataStream._flush = dotStuffingFlush;
  // a connection whose EHLO lacks an extension the message needs fails it before MAIL FROM
  connection._setEnvelope = function (this: ConnectionInternals, envelope, callback) {
    const parameters = envelope?.[PARAMETERS];
    if (parameters) {
      const missing = requiredExtensions(parameters).filter((name) => !this._supportedExtensions.includes(name));
      if (missing.length) return callback(missingExtensionError(missing));
    }
    return setEnvelope.call(this, envelope, callback);
  };
  connection._sendCommand = function (this: ConnectionInternals, str, logStr) {
    const parameters = this._envelope?.[PARAMETERS];
    return sendCommand.call(this, parameters ? commandWithParameters(str, parameters) : str, logStr);
  };
  installed = true;
}
