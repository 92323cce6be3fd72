/**
 * The gateway settings the chart sets itself (listen addresses, ports, the dev
 * upstream folder, the paths of mounted Secrets), and the chart's view of the
 * gateway config: the gateway's schema in which each of them is refused, with
 * the value to use instead, rather than accepted and silently overridden.
 */
import { posix } from 'node:path';
import { z } from 'zod';
import { CONTAINER_PORTS, MOUNT_PATHS, SECRET_KEYS, SERVICE_PORTS } from '../../gateway/src/config/constants';
import { configFields } from '../../gateway/src/config/schema';

/** Set in every pod: the Services and probes reach these addresses and ports. */
export const POD_CONFIG = {
  listenAddress: '0.0.0.0',
  listeners: {
    relay: { port: CONTAINER_PORTS.relay },
    submission: { port: CONTAINER_PORTS.submission },
    smtps: { port: CONTAINER_PORTS.smtps },
  },
  ops: { listenAddress: '0.0.0.0', port: CONTAINER_PORTS.ops },
  // The root filesystem is read-only; only /tmp and the spool volume are writable.
  devUpstream: { dir: posix.join(MOUNT_PATHS.tmpDir, 'dev-mail') },
  spool: { dir: MOUNT_PATHS.spoolDir },
};

/** Set when the matching Secret is mounted. */
export const MOUNTED_CONFIG = {
  tls: { tls: { certFile: posix.join(MOUNT_PATHS.tlsDir, 'tls.crt'), keyFile: posix.join(MOUNT_PATHS.tlsDir, 'tls.key') } },
  upstream: {
    upstream: {
      usernameFile: posix.join(MOUNT_PATHS.secretsDir, SECRET_KEYS.upstreamUsername),
      passwordFile: posix.join(MOUNT_PATHS.secretsDir, SECRET_KEYS.upstreamPassword),
    },
  },
  authUsers: { auth: { usersFile: posix.join(MOUNT_PATHS.secretsDir, SECRET_KEYS.authUsers) } },
};

const listenerPort = (listener: keyof typeof POD_CONFIG.listeners, group: string) =>
  `the container listens on ${CONTAINER_PORTS[listener]}; set the port clients use with services.${group}.ports.${listener} ` +
  `(default ${SERVICE_PORTS[listener]}), and turn the listener on or off with config.listeners.${listener}.enabled`;

/** Dotted path under config → what the chart sets and which value to use instead. */
export const CHART_OWNED_CONFIG: Readonly<Record<string, string>> = {
  listenAddress: 'the pod listens on all its addresses; limit who may relay with config.policy.allowedNetworks and who may connect with networkPolicy',
  'listeners.relay.port': listenerPort('relay', 'smtp'),
  'listeners.submission.port': listenerPort('submission', 'submission'),
  'listeners.smtps.port': listenerPort('smtps', 'submission'),
  'ops.listenAddress': 'the ops server listens on all the pod\'s addresses; limit who may connect with networkPolicy.metricsFrom',
  'ops.port': `the ops server listens on ${CONTAINER_PORTS.ops}, which the probes, the metrics Service and the ServiceMonitor use`,
  'devUpstream.dir': `the development upstream writes to ${POD_CONFIG.devUpstream.dir}, the only writable folder; set config.upstream.host to relay to a smarthost`,
  'spool.dir': `messages wait in the emptyDir the chart mounts at ${MOUNT_PATHS.spoolDir}; size it with spool.sizeLimit and cap it with config.spool.maxBytes`,
  'tls.certFile': 'set tls.existingSecret to a kubernetes.io/tls Secret: the chart mounts it and points the gateway at it',
  'tls.keyFile': 'set tls.existingSecret to a kubernetes.io/tls Secret: the chart mounts it and points the gateway at it',
  'upstream.usernameFile': `set secret.useUpstreamCredentials (and secret.existingSecret): the chart mounts its ${SECRET_KEYS.upstreamUsername}`,
  'upstream.passwordFile': `set secret.useUpstreamCredentials (and secret.existingSecret): the chart mounts its ${SECRET_KEYS.upstreamPassword}`,
  'auth.usersFile': `set secret.useAuthUsers (and secret.existingSecret): the chart mounts its ${SECRET_KEYS.authUsers}`,
};

/** A key the values accept only to refuse it at render time, with its message (JSON Schema `readOnly`). */
const owned = (hint: string) => z.unknown().optional().meta({ readOnly: true, description: `Owned by the chart: ${hint}.` });

type AnyZod = z.ZodType;

/** The inner object of a `.prefault()`/`.default()` wrapper, or undefined. */
function objectOf(schema: AnyZod): z.ZodObject | undefined {
  if (schema instanceof z.ZodObject) return schema;
  if (schema instanceof z.ZodPrefault || schema instanceof z.ZodDefault) return objectOf(schema.unwrap() as AnyZod);
  return undefined;
}

/** `schema` with the keys at `paths` (relative, split) replaced by refusing keys; objects keep their description. */
function withOwnedKeys(schema: AnyZod, paths: Array<{ path: string[]; hint: string }>, at: string): AnyZod {
  if (paths.length === 0) return schema;
  const object = objectOf(schema);
  if (!object) throw new Error(`config.${at} is not an object in gateway/src/config/schema.ts, so the chart cannot own a key under it`);
  const shape: Record<string, AnyZod> = { ...object.shape };
  for (const key of new Set(paths.map((p) => p.path[0]))) {
    if (!(key in shape)) throw new Error(`config.${at ? `${at}.` : ''}${key} is not a gateway setting (gateway/src/config/schema.ts)`);
    const below = paths.filter((p) => p.path[0] === key);
    const leaf = below.find((p) => p.path.length === 1);
    shape[key] = leaf ? owned(leaf.hint) : withOwnedKeys(shape[key], below.map((p) => ({ path: p.path.slice(1), hint: p.hint })), at ? `${at}.${key}` : key);
  }
  const rebuilt = z.strictObject(shape);
  const described = schema.description ? rebuilt.describe(schema.description) : rebuilt;
  return at === '' ? described : described.prefault({});
}

/** The gateway's config schema as the chart's `config` values accept it. */
// configFields, not configSchema: the cross-key checks (a smarthost or devUpstream.enabled) are stated in
// values.schema.json by json-schema.ts, so the defaults in values.yaml can still be written out.
export const chartConfigSchema = withOwnedKeys(
  configFields,
  Object.entries(CHART_OWNED_CONFIG).map(([path, hint]) => ({ path: path.split('.'), hint })),
  '',
) as z.ZodObject;
