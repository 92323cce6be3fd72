/**
 * The gateway's Prometheus metrics (docs/metrics.md describes each one; a test
 * keeps that page, the alerting rules and this file in step).
 *
 * Every label value is one of a small closed set, spelled out below as a type,
 * so a call site cannot put an address, a user name or an upstream's free text
 * into a label and blow up the series count. Names follow Prometheus rules:
 * `smtp_gateway_` prefix, base units (seconds, bytes), `_total` on counters.
 *
 * Each gateway instance gets its own Registry (several gateways can run in one
 * test process); Node's default process metrics are collected on it too.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { AUTH_METHODS, LISTENER_NAMES, type ListenerName } from '../config/constants';
import { gatewayVersion } from './version';

export type { ListenerName };

/**
 * Why a connection was closed before the greeting. (A draining gateway refuses none: its listeners
 * stop accepting, so the kernel turns new connections away before the gateway sees them.)
 */
export type ConnectionRefusedReason =
  | 'max_connections'
  | 'max_per_ip'
  | 'proxy_untrusted'
  | 'proxy_invalid'
  | 'proxy_timeout'
  | 'internal_error';

/** Which inbound deadline expired (smtp/session-deadlines.ts). */
export type DeadlineName = 'first_command' | 'command' | 'auth_or_mail' | 'data_rate' | 'data_total' | 'session' | 'commands';

export type MessageOutcome = 'relayed' | 'rejected' | 'deferred' | 'aborted';

/** Permanent refusals (5xx to the client), by us or passed on from the upstream. */
export type RejectReason =
  | 'relay_denied'
  | 'auth_required'
  | 'sender_domain'
  /** applications.unmatched is refuse and the session matches no application. */
  | 'no_application'
  /** The client set X-SES-CONFIGURATION-SET or X-SES-MESSAGE-TAGS, which only the application policy may. */
  | 'ses_header'
  | 'header_from'
  | 'recipient_domain'
  | 'message_size'
  | 'line_endings'
  | 'invalid_message'
  | 'unsupported_parameter'
  | 'smtputf8_required'
  | 'upstream_permanent';

/** Temporary refusals (4xx to the client, which will retry). */
export type DeferReason =
  | 'rate_limited'
  | 'upstream_wait'
  /** 452 to a recipient past policy.maxRecipients: the client sends it in another transaction. */
  | 'too_many_recipients'
  | 'upstream_temporary'
  | 'upstream_timeout'
  | 'upstream_connection'
  | 'shutdown'
  | 'spool_full'
  | 'internal_error';

/**
 * The transaction ended without a reply to the final dot; nothing was delivered. A session a deadline
 * closed (smtp_gateway_deadlines_expired_total) counts as client_disconnect.
 */
export type AbortReason = 'client_disconnect' | 'client_reset';

/** The labels of smtp_gateway_messages_total: each outcome only with its own reasons. */
export type MessageLabels =
  | { outcome: 'relayed'; reason: 'ok' }
  | { outcome: 'rejected'; reason: RejectReason }
  | { outcome: 'deferred'; reason: DeferReason }
  | { outcome: 'aborted'; reason: AbortReason };

export type MessageReason = MessageLabels['reason'];

/** The mechanisms the listeners offer (AUTH_METHODS); 'other' only if smtp-server ever passed another. */
export type AuthMechanism = 'plain' | 'login' | 'other';
/**
 * An AUTH the gateway checked or refused. AUTH before TLS never reaches it: the listeners do not
 * offer AUTH until STARTTLS (unless auth.allowInsecure), and smtp-server answers such a command itself.
 */
export type AuthResult = 'success' | 'failure' | 'rate_limited';

export type TlsHandshakeResult = 'success' | 'failure';

type Digit = '0' | '1' | '2' | '3' | '4' | '5' | '6' | '7' | '8' | '9';
/** A final SMTP reply code, "200" to "599". */
export type SmtpReplyCode = `${'2' | '3' | '4' | '5'}${Digit}${Digit}`;
/** The upstream's reply code, or why there was none. */
export type UpstreamReplyLabel = SmtpReplyCode | 'timeout' | 'connection_error' | 'protocol_error';

export type UpstreamPoolState = 'active' | 'idle' | 'queued';
export const UPSTREAM_POOL_STATES: readonly UpstreamPoolState[] = ['active', 'idle', 'queued'];

export type SpoolMedium = 'memory' | 'disk';
export const SPOOL_MEDIA: readonly SpoolMedium[] = ['memory', 'disk'];

/** What became of a delivery status notification the gateway tried to send. */
export type DsnResult = 'sent' | 'failed';

/** What the upstream pool looks like right now; read on every scrape. */
export type UpstreamPoolSnapshot = Record<UpstreamPoolState, number>;

/**
 * Latency buckets from 1 ms (a loopback upstream) to 60 s (the default upstream
 * socket timeout, upstream.socketTimeoutMs, which a stalling smarthost reaches).
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60,
];

const KIB = 1024;
/** Message sizes from a 1 KiB notification to 50 MiB (above SES's 40 MB limit). */
export const SIZE_BUCKETS_BYTES: readonly number[] = [1, 4, 16, 64, 256, 1024, 4096, 10240, 25600, 51200].map((k) => k * KIB);

type Labels = Record<string, string>;
type Values<L extends Labels> = Promise<MetricObjectWithValues<MetricValue<keyof L & string>>>;

/** A prom-client Counter whose label values are type-checked. */
export interface LabelledCounter<L extends Labels> {
  inc(labels: L, value?: number): void;
  get(): Values<L>;
  reset(): void;
}

export interface LabelledGauge<L extends Labels> {
  inc(labels: L, value?: number): void;
  dec(labels: L, value?: number): void;
  set(labels: L, value: number): void;
  get(): Values<L>;
  reset(): void;
}

export interface LabelledHistogram<L extends Labels> {
  observe(labels: L, value: number): void;
  /** Starts a timer; the function it returns observes the elapsed seconds under `labels` and returns them. */
  startTimer(): (labels: L) => number;
  get(): Values<L>;
  reset(): void;
}

export interface GatewayMetrics {
  readonly registry: Registry;

  connectionsOpen: LabelledGauge<{ listener: ListenerName }>;
  connections: LabelledCounter<{ listener: ListenerName }>;
  connectionsRefused: LabelledCounter<{ listener: ListenerName; reason: ConnectionRefusedReason }>;
  deadlinesExpired: LabelledCounter<{ listener: ListenerName; deadline: DeadlineName }>;

  messages: LabelledCounter<MessageLabels>;
  /** Transactions by application (a name from the applications file, or "unmatched") and outcome. */
  applicationMessages: LabelledCounter<{ application: string; outcome: MessageOutcome }>;
  /** Reloads of the applications file. */
  applicationReloads: LabelledCounter<{ result: 'success' | 'failure' }>;
  /** Bytes of message data relayed (counted once the upstream accepted the message). */
  messageBytes: Counter;
  /** Size of each message received from a client, whatever its outcome. */
  messageSize: Histogram;
  recipients: LabelledCounter<{ outcome: MessageOutcome }>;

  authAttempts: LabelledCounter<{ mechanism: AuthMechanism; result: AuthResult }>;
  tlsHandshakes: LabelledCounter<{ listener: ListenerName; result: TlsHandshakeResult }>;

  upstreamReplies: LabelledCounter<{ code: UpstreamReplyLabel }>;
  /** Seconds from the upstream MAIL FROM to the upstream's final reply. */
  upstreamLatency: Histogram;
  /** Seconds from the client's MAIL FROM to our final reply (or the abort). */
  transactionLatency: LabelledHistogram<{ outcome: MessageOutcome }>;
  upstreamPool: LabelledGauge<{ state: UpstreamPoolState }>;
  /** The upstream refused the gateway's own credentials (SMTP AUTH, or AWS credentials for SES). */
  upstreamCredentialFailures: Counter;
  /** Bytes of received messages held in the spool, read at scrape time. */
  spoolBytes: LabelledGauge<{ medium: SpoolMedium }>;
  /** Delivery status notifications for recipients the upstream refused after taking the message. */
  dsn: LabelledCounter<{ result: DsnResult }>;
  /** Throttling replies from the upstream (SES's maximum send rate exceeded). */
  upstreamThrottled: Counter;
  /** Messages per second this pod may send now (0: unlimited). */
  upstreamSendRate: Gauge;
  /** Ready gateway pods the account's send rate is divided by. */
  accountSharePeers: Gauge;
  /** Failed lookups of the ready pods (the last count stays in use). */
  accountSharePeerErrors: Counter;

  /** 1 while accepting mail, 0 before the listeners are up and while draining. */
  ready: Gauge;
  buildInfo: LabelledGauge<{ version: string }>;

  /**
   * Where smtp_gateway_upstream_pool reads its values at scrape time (see
   * NodemailerPool#snapshot in relay/nodemailer-adapter.ts). Without a source the gauge reads 0.
   */
  setUpstreamPoolSource(source: (() => UpstreamPoolSnapshot | undefined) | undefined): void;

  /** Where smtp_gateway_spool_bytes reads its values at scrape time. Without a source the gauge reads 0. */
  setSpoolSource(source: (() => Record<SpoolMedium, number>) | undefined): void;

  /**
   * Makes smtp_gateway_ready read `source` at scrape time: pass the same
   * function as the ops server's isReady, and the metric and /readyz cannot
   * disagree. Without a source, `ready.set()` is the way to change it.
   */
  setReadySource(source: (() => boolean) | undefined): void;
}

export interface MetricsOptions {
  /** Value of the build-info `version` label. @default the version in package.json */
  version?: string;
  /** Listeners whose connection series start at 0 so rates work from the first scrape. @default all */
  listeners?: readonly ListenerName[];
}

/**
 * prom-client's default metrics include three gauges named like counters, which
 * `promtool check metrics` flags. Each is the sum of a per-type gauge prom-client
 * also exports (nodejs_active_handles{type} …), so dropping them loses nothing.
 */
const MISNAMED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export function createMetrics(registry: Registry = new Registry(), options: MetricsOptions = {}): GatewayMetrics {
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULT_METRICS) registry.removeSingleMetric(name);

  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers });
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers });
  const histogram = <L extends string>(name: string, help: string, buckets: readonly number[], labelNames: readonly L[] = []) =>
    new Histogram<L>({ name, help, labelNames, buckets: [...buckets], registers });

  const connectionsOpen = gauge('smtp_gateway_connections_open', 'SMTP connections open now, by listener.', ['listener']);
  const connections = counter(
    'smtp_gateway_connections_total',
    'TCP connections the SMTP listener accepted, by listener; those then refused are also in smtp_gateway_connections_refused_total.',
    ['listener'],
  );
  const connectionsRefused = counter(
    'smtp_gateway_connections_refused_total',
    'SMTP connections refused before or at the greeting, by listener and reason.',
    ['listener', 'reason'],
  );
  const deadlinesExpired = counter(
    'smtp_gateway_deadlines_expired_total',
    'SMTP sessions closed with 421 because a deadline expired, by listener and deadline.',
    ['listener', 'deadline'],
  );
  const messages = counter(
    'smtp_gateway_messages_total',
    'Mail transactions finished, by outcome (relayed, rejected, deferred, aborted) and reason.',
    ['outcome', 'reason'],
  );
  const applicationMessages = counter(
    'smtp_gateway_application_messages_total',
    'Mail transactions finished, by application (a name from the applications file, or unmatched) and outcome.',
    ['application', 'outcome'],
  );
  const applicationReloads = counter('smtp_gateway_application_reloads_total', 'Reloads of the applications file after a change, by result.', ['result']);
  const messageBytes = counter('smtp_gateway_relayed_bytes_total', 'Bytes of message data relayed to and accepted by the upstream.');
  const messageSize = histogram(
    'smtp_gateway_message_size_bytes',
    'Size of each message received from a client, whatever its outcome.',
    SIZE_BUCKETS_BYTES,
  );
  const recipients = counter('smtp_gateway_recipients_total', 'Recipients, by the outcome for that recipient.', ['outcome']);
  const authAttempts = counter('smtp_gateway_auth_attempts_total', 'SMTP AUTH attempts, by mechanism and result.', ['mechanism', 'result']);
  const tlsHandshakes = counter(
    'smtp_gateway_tls_handshakes_total',
    'Inbound TLS handshakes (STARTTLS and implicit TLS), by listener and result.',
    ['listener', 'result'],
  );
  const upstreamReplies = counter(
    'smtp_gateway_upstream_replies_total',
    'Upstream final replies to a message, by reply code, or timeout / connection_error / protocol_error when there was none.',
    ['code'],
  );
  const upstreamLatency = histogram(
    'smtp_gateway_upstream_duration_seconds',
    "Seconds from the upstream MAIL FROM to the upstream's final reply.",
    LATENCY_BUCKETS_SECONDS,
  );
  const transactionLatency = histogram(
    'smtp_gateway_transaction_duration_seconds',
    "Seconds from the client's MAIL FROM to the gateway's final reply, by outcome.",
    LATENCY_BUCKETS_SECONDS,
    ['outcome'],
  );

  const upstreamCredentialFailures = counter(
    'smtp_gateway_upstream_credential_failures_total',
    "Messages the upstream could not take because it refused the gateway's own credentials (SMTP AUTH login, or the AWS credentials for SES).",
  );

  const upstreamThrottled = counter(
    'smtp_gateway_upstream_throttled_total',
    'Messages the upstream refused for going over its send rate (SES "454 Throttling failure", API TooManyRequests); each lowers the pod\'s send rate for a while.',
  );
  const upstreamSendRate = gauge('smtp_gateway_upstream_send_rate', 'Messages per second this pod may send upstream now (0: unlimited): its share of the account rate, lowered after throttling.');
  const accountSharePeers = gauge('smtp_gateway_account_share_peers', 'Ready gateway pods the account\'s maximum send rate is divided by (upstream.accountShare).');
  const accountSharePeerErrors = counter(
    'smtp_gateway_account_share_peer_errors_total',
    'Failed lookups of the ready gateway pods (upstream.accountShare); the last count stays in use.',
  );

  let poolSource: (() => UpstreamPoolSnapshot | undefined) | undefined;
  const upstreamPool = new Gauge({
    name: 'smtp_gateway_upstream_pool',
    help: 'Upstream connection pool: connections sending a message (active) or waiting for one (idle), and messages waiting for a connection (queued).',
    labelNames: ['state'] as const,
    registers,
    collect() {
      let snapshot: UpstreamPoolSnapshot | undefined;
      try {
        snapshot = poolSource?.();
      } catch {
        // A scrape must not fail because the transport is being replaced; report an empty pool.
      }
      for (const state of UPSTREAM_POOL_STATES) this.set({ state }, snapshot?.[state] ?? 0);
    },
  });

  let spoolSource: (() => Record<SpoolMedium, number>) | undefined;
  const spoolBytes = new Gauge({
    name: 'smtp_gateway_spool_bytes',
    help: 'Bytes of received messages held until the upstream replies, in memory or spilled to spool.dir.',
    labelNames: ['medium'] as const,
    registers,
    collect() {
      const usage = spoolSource?.();
      for (const medium of SPOOL_MEDIA) this.set({ medium }, usage?.[medium] ?? 0);
    },
  });
  const dsn = counter(
    'smtp_gateway_dsn_total',
    'Delivery status notifications to senders for recipients the upstream refused after taking the message, by result.',
    ['result'],
  );

  let readySource: (() => boolean) | undefined;
  const ready = new Gauge({
    name: 'smtp_gateway_ready',
    help: '1 while the gateway accepts mail, 0 before its listeners are up and while it drains.',
    registers,
    collect() {
      if (!readySource) return;
      let isReady = false;
      try {
        isReady = readySource() === true;
      } catch {
        // Same answer /readyz gives when its check throws: not ready.
      }
      this.set(isReady ? 1 : 0);
    },
  });
  const buildInfo = gauge('smtp_gateway_build_info', 'Always 1; the version label says which gateway build is running.', ['version']);

  ready.set(0);
  buildInfo.set({ version: options.version ?? gatewayVersion() }, 1);
  messageBytes.inc(0);
  upstreamCredentialFailures.inc(0);
  for (const result of ['sent', 'failed'] as const) dsn.inc({ result }, 0);
  upstreamThrottled.inc(0);
  accountSharePeerErrors.inc(0);
  accountSharePeers.set(1);
  for (const result of ['success', 'failure'] as const) applicationReloads.inc({ result }, 0);
  for (const listener of options.listeners ?? LISTENER_NAMES) {
    connectionsOpen.set({ listener }, 0);
    connections.inc({ listener }, 0);
  }

  return {
    registry,
    connectionsOpen,
    connections,
    connectionsRefused,
    deadlinesExpired,
    messages,
    applicationMessages,
    applicationReloads,
    messageBytes,
    messageSize,
    recipients,
    authAttempts,
    tlsHandshakes,
    upstreamReplies,
    upstreamLatency,
    transactionLatency,
    upstreamPool,
    upstreamCredentialFailures,
    spoolBytes,
    dsn,
    upstreamThrottled,
    upstreamSendRate,
    accountSharePeers,
    accountSharePeerErrors,
    ready,
    buildInfo,
    setUpstreamPoolSource(source) {
      poolSource = source;
    },
    setSpoolSource(source) {
      spoolSource = source;
    },
    setReadySource(source) {
      readySource = source;
    },
  };
}

const AUTH_MECHANISMS: ReadonlySet<string> = new Set(AUTH_METHODS.map((method) => method.toLowerCase()));

/** smtp-server's `auth.method` ("PLAIN", "LOGIN", …) as a label value. */
export function authMechanismLabel(method: string | undefined): AuthMechanism {
  const name = (method ?? '').toLowerCase();
  return AUTH_MECHANISMS.has(name) ? (name as AuthMechanism) : 'other';
}

/**
 * An upstream reply code as a label value: a final code 200-599 as itself,
 * anything else (a missing or malformed code) as 'protocol_error'.
 */
export function upstreamReplyLabel(code: number | string | undefined | null): UpstreamReplyLabel {
  const text = String(code ?? '');
  return /^[2-5]\d\d$/.test(text) ? (text as SmtpReplyCode) : 'protocol_error';
}
