/**
 * The SMTP `Upstream` (upstream.ts): nodemailer's pooled SMTP transport to the
 * smarthost. A message goes out only once it is whole in the spool, so a
 * pooled connection is busy only while the message moves at the smarthost's
 * speed; aborting the signal closes the connection before the final dot.
 *
 * nodemailer itself is reached only through nodemailer-adapter.ts.
 */
import type { GatewayConfig } from '../config/schema';
import { NodemailerPool, type PoolError, type PoolOptions } from './nodemailer-adapter';
import type { RecipientRefusal, Upstream, UpstreamAcceptance, UpstreamHooks } from './upstream';
import { watchCredentials, type UpstreamCredentials } from './upstream-credentials';

export type UpstreamSettings = GatewayConfig['upstream'] & {
  /** Name used in the EHLO to the upstream. */
  readonly clientName?: string;
};

export function createSmtpUpstream(settings: UpstreamSettings, hooks: UpstreamHooks = {}): Upstream {
  const credentials = watchCredentials(settings, {
    pollMs: hooks.credentialPollMs,
    // connections open now stay logged in; each new one reads the pool's options
    onChange: (next) => {
      pool.updateOptions(credentialOptions(settings, next));
      hooks.onCredentialsReloaded?.();
    },
    onError: (err) => hooks.onCredentialsError?.(err),
  });
  const pool = new NodemailerPool(transportOptions(settings, credentials.current));
  return {
    remoteName: settings.host,
    applicationHeaders: true,
    async send(envelope, message, signal) {
      try {
        const delivery = await pool.send({ from: envelope.from, to: envelope.to, parameters: envelope.parameters, message, signal, beforeData: deferral });
        return acceptance(delivery.response, delivery.rejected);
      } catch (err) {
        if ((err as PoolError).code === 'EAUTH') hooks.onCredentialFailure?.(err as Error);
        throw err;
      }
    },
    poolSnapshot: () => pool.snapshot(),
    close(force = false) {
      credentials.close();
      pool.close(force);
    },
  };
}

function acceptance(response: string, refused: readonly PoolError[]): UpstreamAcceptance {
  const rejected: RecipientRefusal[] = refused.map((err) => ({
    address: String(err.recipient ?? ''),
    code: err.responseCode ?? 550,
    reply: (err.response ?? '').toString().trim(),
  }));
  return { response, rejected };
}

/**
 * A recipient the upstream refused for now (4xx at RCPT) would lose the message
 * if the others got it and the client heard 250: SMTP cannot defer one recipient
 * after DATA. The whole attempt fails before any data instead (451, no dot), so
 * the client's retry reaches everyone exactly once (RELIABILITY.md, "No
 * recipient is silently dropped"). Permanent refusals go on: retrying cannot
 * help those, and the sender is told of them by a delivery status notification.
 */
function deferral(rejected: readonly PoolError[]): Error | undefined {
  const deferred = rejected.find((err) => (err.responseCode ?? 0) >= 400 && (err.responseCode ?? 0) < 500);
  if (!deferred) return undefined;
  // 451 rather than the upstream's own code: a 421 would make the pool retry it on another connection
  return Object.assign(new Error('upstream deferred a recipient'), { responseCode: 451, response: deferred.response });
}

/** The pool options that follow the credential files. */
function credentialOptions(settings: UpstreamSettings, credentials: UpstreamCredentials): Pick<PoolOptions, 'auth' | 'tls'> {
  return {
    auth: credentials.auth ? { ...credentials.auth } : undefined,
    tls: {
      rejectUnauthorized: settings.rejectUnauthorized,
      minVersion: 'TLSv1.2',
      ca: credentials.ca,
      servername: settings.host,
    },
  };
}

/** The send rate (messagesPerSecond) is not here: the send slots (send-slots.ts) apply it, with a bounded wait. */
export function transportOptions(settings: UpstreamSettings, credentials: UpstreamCredentials): PoolOptions & { pool: true } {
  return {
    pool: true,
    host: settings.host,
    port: settings.port,
    name: settings.clientName || undefined,
    secure: settings.security === 'tls',
    requireTLS: settings.security === 'starttls',
    ignoreTLS: settings.security === 'none',
    ...credentialOptions(settings, credentials),
    connectionTimeout: settings.connectionTimeoutMs,
    greetingTimeout: settings.connectionTimeoutMs,
    socketTimeout: settings.socketTimeoutMs,
    // an aborted message's connection is destroyed, not ended: nothing queued for it is flushed
    socketCloseTimeout: 0,
    dnsTimeout: settings.connectionTimeoutMs,
    maxConnections: settings.maxConnections,
    maxMessages: settings.maxMessagesPerConnection,
    logger: false,
    debug: false,
  };
}
