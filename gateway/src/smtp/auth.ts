/**
 * SMTP AUTH (PLAIN, LOGIN) against the mounted users file. The listeners hide
 * AUTH before TLS unless `auth.allowInsecure` (listeners.ts); this adds the
 * per-IP limit on failed attempts so passwords cannot be guessed at line rate:
 * attempts from one IP are verified one at a time, each failure's reply is
 * delayed a little more, and after `maxFailures` AUTH is refused.
 */
import type { SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerSession } from 'smtp-server';
import type { GatewayConfig } from '../config/schema';
import { authMechanismLabel, type GatewayMetrics } from '../ops/metrics';
import type { Logger } from '../ops/logger';
import type { UserStore } from './auth-users';
import { SlidingWindowLimiter } from './rate-limiter';
import { smtpError } from './smtp-reply';

export type AuthHandler = (
  auth: SMTPServerAuthentication,
  session: SMTPServerSession,
  callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
) => void;

/** Added to the 535 of a failed AUTH per failure the client IP has in the window. */
export const FAILURE_DELAY_MS = 250;

/** @param clientKey the key failures are counted under (smtp/client-key.ts: an IPv6 client by its prefix) */
export function createAuthHandler(
  settings: GatewayConfig['auth'],
  users: UserStore,
  metrics: GatewayMetrics,
  logger: Logger,
  clientKey: (ip: string) => string,
): AuthHandler {
  const failures = new SlidingWindowLimiter({ limit: settings.maxFailures, windowMs: settings.failureWindowSeconds * 1000 });
  // One verification at a time per client IP: checked side by side, every attempt a
  // guesser opens connections for would pass the limit before the first failure is
  // recorded. A legitimate client's parallel connections just wait a scrypt each.
  const turns = new Map<string, Promise<void>>();
  const attempt = async (...[auth, session, callback]: Parameters<AuthHandler>): Promise<void> => {
    const mechanism = authMechanismLabel(auth.method);
    const ip = clientKey(session.remoteAddress);
    // maxFailures failed attempts within the window block further attempts until the oldest ages out
    if (!failures.allows(ip)) {
      metrics.authAttempts.inc({ mechanism, result: 'rate_limited' });
      logger.warn('auth rate limited', { session: session.id, client: ip });
      return callback(smtpError(454, '4.7.0', 'Too many failed authentication attempts, try again later'));
    }
    const username = auth.username ?? '';
    let ok: boolean;
    try {
      ok = await users.verify(username, auth.password ?? '');
    } catch (err) {
      logger.error('auth check failed', { session: session.id, client: ip, err: (err as Error).message });
      return callback(smtpError(454, '4.7.0', 'Temporary authentication failure'));
    }
    if (ok) {
      metrics.authAttempts.inc({ mechanism, result: 'success' });
      logger.info('auth succeeded', { session: session.id, client: ip, user: username });
      return callback(null, { user: username });
    }
    metrics.authAttempts.inc({ mechanism, result: 'failure' });
    logger.warn('auth failed', { session: session.id, client: ip, user: username });
    failures.hit(ip);
    // Slowed, then refused: each failure from this IP within the window waits longer
    // for its 535, so a guesser gets a handful of slow tries before the 454s start.
    const delay = Math.min(failures.count(ip), settings.maxFailures) * FAILURE_DELAY_MS;
    setTimeout(() => callback(smtpError(535, '5.7.8', 'Authentication credentials invalid')), delay).unref();
  };
  return (auth, session, callback) => {
    const ip = clientKey(session.remoteAddress);
    const turn = (turns.get(ip) ?? Promise.resolve())
      .then(() => attempt(auth, session, callback))
      // never a rejected link: the next attempt from this IP must still get its turn
      .catch((err: Error) => logger.error('auth handler failed', { session: session.id, client: ip, err: err.message }));
    turns.set(ip, turn);
    void turn.then(() => {
      if (turns.get(ip) === turn) turns.delete(ip);
    });
  };
}
