/**
 * Names shared by the gateway and the chart (synth imports this file), so the
 * ports, paths and mount points a pod is configured with cannot drift from
 * what the service listens on and reads.
 */

/** Container ports: unprivileged, so the pod runs as non-root with no capabilities. */
export const CONTAINER_PORTS = {
  /** Relay: plain SMTP with STARTTLS offered. The Service exposes it as 25. */
  relay: 2525,
  /** Submission: STARTTLS then AUTH required. The Service exposes it as 587. */
  submission: 2587,
  /** Implicit TLS (SMTPS). The Service exposes it as 465. */
  smtps: 2465,
  /** Ops HTTP server: /metrics, /healthz, /readyz. */
  ops: 9090,
} as const;

/** The well-known ports each listener is published on by the Services. */
export const SERVICE_PORTS = {
  relay: 25,
  submission: 587,
  smtps: 465,
  ops: 9090,
} as const;

export type ListenerName = 'relay' | 'submission' | 'smtps';
export const LISTENER_NAMES: readonly ListenerName[] = ['relay', 'submission', 'smtps'];

/** The SMTP AUTH mechanisms the listeners offer; smtp-server refuses any other before the gateway sees it. */
export const AUTH_METHODS = ['PLAIN', 'LOGIN'] as const;

/**
 * ESMTP extensions the gateway can pass through to the upstream (advertised to
 * clients only when upstream.extensions lists them). REQUIRETLS is not among
 * them: it is never advertised and its parameter is refused.
 */
export const FORWARDED_EXTENSIONS = ['8BITMIME', 'SMTPUTF8', 'DSN'] as const;
export type ForwardedExtension = (typeof FORWARDED_EXTENSIONS)[number];

/** HTTP paths served on the ops port. */
export const OPS_PATHS = {
  metrics: '/metrics',
  liveness: '/healthz',
  readiness: '/readyz',
} as const;

/** Where the chart mounts things and the gateway looks for them. */
export const MOUNT_PATHS = {
  /** The ConfigMap holding config.yaml. */
  configDir: '/etc/smtp-gateway',
  /** The Secret with upstream credentials and the AUTH users file. */
  secretsDir: '/etc/smtp-gateway/secrets',
  /** The TLS certificate Secret (kubernetes.io/tls: tls.crt, tls.key). */
  tlsDir: '/etc/smtp-gateway/tls',
  /** The only writable path under a read-only root filesystem. */
  tmpDir: '/tmp',
  /** The emptyDir that holds messages too large for memory until the upstream replies (spool.dir). */
  spoolDir: '/var/spool/smtp-gateway',
} as const;

export const CONFIG_FILE_NAME = 'config.yaml';

/** Keys inside the gateway's Secret; the chart writes them, the config points at them. */
export const SECRET_KEYS = {
  upstreamUsername: 'upstream-username',
  upstreamPassword: 'upstream-password',
  authUsers: 'auth-users',
} as const;

/** Environment variables read at start-up. */
export const ENV = {
  /** Path of the YAML config file. */
  configFile: 'SMTPGW_CONFIG',
  /** Prefix of per-key overrides: SMTPGW_UPSTREAM__HOST sets upstream.host. */
  overridePrefix: 'SMTPGW_',
} as const;

/** The fixed non-root uid/gid the image runs as and the chart's securityContext requires. */
export const RUN_AS_USER = 10001;
export const RUN_AS_GROUP = 10001;
