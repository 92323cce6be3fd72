/**
 * The smtp-server hooks of every listener: policy decisions at MAIL FROM and
 * RCPT TO, the relay of the DATA stream, and the bookkeeping around them
 * (metrics, one log line per transaction, drain tracking). The decisions
 * themselves live in session-policy.ts, envelope-extensions.ts and
 * relay/transaction.ts.
 */
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { ListenerName } from '../config/constants';
import type { DrainController } from '../ops/drain';
import type { GatewayMetrics, MessageLabels } from '../ops/metrics';
import type { Logger } from '../ops/logger';
import { rfc5322DateNow } from '../relay/header-rewriter';
import { deferred, type Outcome, RefusalError, rejected } from '../relay/outcome';
import type { Spool } from '../relay/spool';
import { type RelayOptions, type RelayRecord, relayMessage } from '../relay/transaction';
import { applicationLabel, type Application, type ApplicationPolicy } from './application-policy';
import type { AuthHandler } from './auth';
import { canonicalAddress } from './domains';
import type { EnvelopeExtensions } from './envelope-extensions';
import type { SessionHooks } from './listeners';
import type { SessionPolicy } from './session-policy';
import { formatReply, toError } from './smtp-reply';

export interface HookDeps {
  readonly listener: ListenerName;
  readonly policy: SessionPolicy;
  /** Per-application rules, on top of `policy` (application-policy.ts). */
  readonly applications: ApplicationPolicy;
  /** ESMTP parameters and internationalised mail (envelope-extensions.ts). */
  readonly extensions: EnvelopeExtensions;
  readonly auth?: AuthHandler;
  readonly relay: Omit<RelayOptions, 'received' | 'inspectHeaders'>;
  /** Name in the Received header. */
  readonly hostname: string;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly drain: DrainController;
  /** True once the listeners stopped accepting: no new transactions, sessions close after theirs. */
  readonly stopping: () => boolean;
}

/** Per transaction (smtp-server makes a new envelope object for each). */
interface TransactionState {
  readonly started: number;
  readonly leave: () => void;
  /** Resolved once at MAIL FROM: a reload during the transaction does not change it. */
  readonly application?: Application;
  /** The last recipient refused: it decides the outcome of a transaction that ends without DATA. */
  refusal?: Outcome;
}

/** The submission listener's answer to MAIL FROM before AUTH. */
const AUTH_REQUIRED = rejected({ code: 530, status: '5.7.0', text: 'Authentication required' }, 'auth_required');

/** The 421 a drain sends: to idle sessions, to new transactions, and to sessions after their last one. */
export const SHUTTING_DOWN = { code: 421, status: '4.3.2', text: 'Service shutting down, try again later' } as const;

export function createSessionHooks(deps: HookDeps): SessionHooks {
  const { policy, applications, extensions, metrics, logger, drain } = deps;
  // The open transaction of each session, by session id. Not by envelope: RSET, EHLO and
  // STARTTLS swap the envelope for a new one without any hook running, and a transaction
  // keyed by the old one would stay "in flight" for ever, holding every drain to its grace.
  const transactions = new Map<string, TransactionState>();

  // messages_total counts each transaction once: here when it ends without DATA
  // (given up after refused recipients, reset, or the client left), else in onData.
  const countMessage = (labels: MessageLabels, application: Application | undefined) => {
    metrics.messages.inc(labels);
    metrics.applicationMessages.inc({ application: applicationLabel(application), outcome: labels.outcome });
  };

  const endTransaction = (sessionId: string, ended: 'data' | 'reset' | 'closed') => {
    const state = transactions.get(sessionId);
    if (!state) return;
    state.leave();
    transactions.delete(sessionId);
    if (ended === 'data') return;
    if (state.refusal) countMessage(state.refusal.labels, state.application);
    else countMessage({ outcome: 'aborted', reason: ended === 'reset' ? 'client_reset' : 'client_disconnect' }, state.application);
  };

  const recordRefusal = (session: SMTPServerSession, stage: string, refusal: Outcome, address: string, application?: Application) => {
    const transaction = transactions.get(session.id);
    if (transaction) {
      // a refused recipient is not a refused message: the others may still be relayed
      transaction.refusal = refusal;
      metrics.recipients.inc({ outcome: refusal.labels.outcome });
    } else {
      countMessage(refusal.labels, application);
    }
    logger.info('command refused', {
      session: session.id,
      listener: deps.listener,
      client: session.remoteAddress,
      user: session.user,
      application: applicationLabel(transaction?.application ?? application),
      stage,
      address,
      reply: formatReply(refusal.reply),
      reason: refusal.labels.reason,
    });
  };

  const inspectHeaders = (application: Application | undefined) => (block: Buffer) => {
    const refusal = applications.checkHeaders(application, block) ?? policy.checkHeaderFrom(block) ?? extensions.checkHeaders(block);
    return refusal ? new RefusalError(refusal) : undefined;
  };

  return {
    onAuth: deps.auth,

    onSecure(_socket, _session, callback) {
      metrics.tlsHandshakes.inc({ listener: deps.listener, result: 'success' });
      callback();
    },

    onMailFrom(address, session, callback) {
      if (deps.stopping()) return callback(toError(SHUTTING_DOWN));
      // the listeners leave this to the hooks (authOptional), so it is counted like any refusal
      const application = applications.resolve(session);
      if (deps.listener === 'submission' && !session.user) {
        recordRefusal(session, 'MAIL FROM', AUTH_REQUIRED, address.address, application);
        return callback(toError(AUTH_REQUIRED.reply));
      }
      endTransaction(session.id, 'reset'); // one given up without DATA (RSET, EHLO, STARTTLS)
      const mailFrom = canonicalAddress(address.address);
      // the application's own rate is hit only after the global checks passed
      const refusal =
        extensions.checkMailFrom(address) ??
        applications.checkSender(application, mailFrom, session) ??
        policy.checkMailFrom(mailFrom, session) ??
        spoolRefusal(address.args, deps.relay.spool) ??
        applications.checkRate(application);
      if (refusal) {
        recordRefusal(session, 'MAIL FROM', refusal, mailFrom, application);
        return callback(toError(refusal.reply));
      }
      transactions.set(session.id, { started: performance.now(), leave: drain.enter(), application });
      callback();
    },

    onRcptTo(address, session, callback) {
      const rcptTo = canonicalAddress(address.address);
      const refusal =
        policy.checkRcptTo(rcptTo, session) ??
        applications.checkRcptTo(transactions.get(session.id)?.application, session.envelope.rcptTo.length) ??
        extensions.checkRcptTo(address, session.envelope);
      if (refusal) {
        recordRefusal(session, 'RCPT TO', refusal, rcptTo);
        return callback(toError(refusal.reply));
      }
      callback();
    },

    onData(stream: SMTPServerDataStream, session, callback) {
      const envelope = session.envelope;
      const state = transactions.get(session.id);
      // domains go upstream in their canonical ASCII form, whatever smtp-server decoded them to
      const from = envelope.mailFrom ? canonicalAddress(envelope.mailFrom.address) : '';
      const to = envelope.rcptTo.map((rcpt) => canonicalAddress(rcpt.address));
      const relay: RelayOptions = {
        ...deps.relay,
        received: receivedHeader(session, deps.hostname),
        // always: a client's own X-SES-* headers are refused whatever else is checked
        inspectHeaders: inspectHeaders(state?.application),
      };
      const application = state?.application?.context;
      relayMessage(stream, { from, to, parameters: extensions.forwarded(envelope), application }, relay)
        .then((record) => {
          try {
            record_(record);
          } catch (err) {
            // metrics or logging must never change the reply the upstream's answer decided
            logger.error('transaction bookkeeping failed', { session: session.id, err: (err as Error).message });
          }
          return record.outcome;
        })
        .catch((err: Error): Outcome => {
          logger.error('transaction failed', { session: session.id, err: err.message });
          return deferred({ code: 451, status: '4.3.0', text: 'Temporary failure, try again later' }, 'internal_error');
        })
        .then((outcome) => {
          endTransaction(session.id, 'data');
          if (outcome.labels.outcome === 'relayed') callback(null, `${outcome.reply.status} ${outcome.reply.text}`);
          else callback(toError(outcome.reply));
        });

      function record_(record: RelayRecord) {
        const { labels, reply, upstream } = record.outcome;
        const seconds = state ? (performance.now() - state.started) / 1000 : 0;
        countMessage(labels, state?.application);
        metrics.messageSize.observe(record.sizeIn);
        const refusedUpstream = upstream?.rejected?.length ?? 0;
        metrics.recipients.inc({ outcome: labels.outcome }, to.length - refusedUpstream);
        if (refusedUpstream) metrics.recipients.inc({ outcome: 'rejected' }, refusedUpstream);
        if (upstream?.dsn === 'sent' || upstream?.dsn === 'failed') metrics.dsn.inc({ result: upstream.dsn });
        metrics.transactionLatency.observe({ outcome: labels.outcome }, seconds);
        if (upstream?.label) metrics.upstreamReplies.inc({ code: upstream.label });
        if (record.upstreamSeconds !== undefined) metrics.upstreamLatency.observe(record.upstreamSeconds);
        if (labels.outcome === 'relayed') metrics.messageBytes.inc(record.sizeOut);
        // a refused recipient whose sender could not be told is the one case needing a person
        const log = upstream?.dsn === 'failed' ? logger.error.bind(logger) : logger.info.bind(logger);
        log('transaction', {
          session: session.id,
          transaction: session.transaction,
          listener: deps.listener,
          client: session.remoteAddress,
          user: session.user,
          application: applicationLabel(state?.application),
          tls: session.secure,
          from,
          recipients: to.length,
          sizeIn: record.sizeIn,
          sizeOut: record.sizeOut,
          outcome: labels.outcome,
          reason: labels.reason,
          reply: formatReply(reply),
          upstreamReply: upstream?.reply,
          upstreamRejected: upstream?.rejected,
          dsn: upstream?.dsn,
          dsnError: record.dsnError,
          spilled: record.spilled,
          seconds: Math.round(seconds * 1000) / 1000,
        });
      }
    },

    onClose(session) {
      endTransaction(session.id, 'closed');
    },
  };
}

/** RFC 1870 section 6.1: a declared SIZE the spool has no room for now gets 452 4.3.1 before any data. */
function spoolRefusal(args: unknown, spool: Spool): Outcome | undefined {
  const declared = Number((args as { SIZE?: string } | undefined)?.SIZE ?? 0);
  if (!(declared > 0) || spool.fits(declared)) return undefined;
  return deferred({ code: 452, status: '4.3.1', text: 'Insufficient system storage, try again later' }, 'spool_full');
}

/** The sessions that are not inside a transaction, which a drain may close at once. */
export function isIdleSession(session: SMTPServerSession): boolean {
  return !session.envelope || !session.envelope.mailFrom;
}

/** RFC 5321 section 4.4 trace line, e.g. "from app.local (app.local [10.0.0.5]) by gw with ESMTPS id x; date". */
function receivedHeader(session: SMTPServerSession, hostname: string): string {
  const helo = session.hostNameAppearsAs || 'unknown';
  const ip = session.remoteAddress;
  const literal = ip.includes(':') ? `IPv6:${ip}` : ip;
  // without reverse lookups smtp-server reports the address literal as the host name
  const rdns = session.clientHostname && !session.clientHostname.startsWith('[') ? session.clientHostname : 'unknown';
  return `from ${helo} (${rdns} [${literal}]) by ${hostname} (smtp-gateway) with ${session.transmissionType || 'ESMTP'} id ${session.id}.${session.transaction ?? 1}; ${rfc5322DateNow()}`;
}
