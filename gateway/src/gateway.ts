/**
 * The gateway as one object: the SMTP listeners, the upstream transport, the
 * ops server and the drain sequence, started from a validated configuration.
 * main.ts adds only the process around it (config loading, signals, exit code);
 * tests start it in-process with ephemeral ports.
 */
import { setMaxListeners } from 'node:events';
import { hostname as osHostname } from 'node:os';
import { Registry } from 'prom-client';
import type { ListenerName } from './config/constants';
import { LISTENER_NAMES } from './config/constants';
import type { GatewayConfig } from './config/schema';
import { DrainController } from './ops/drain';
import { createLogger, type Logger } from './ops/logger';
import { createMetrics, type GatewayMetrics } from './ops/metrics';
import { startOpsServer, type OpsServer } from './ops/ops-server';
import { startDevUpstream, type DevUpstream } from './relay/dev-upstream';
import { watchPeerCount } from './relay/peer-count';
import { SendRate, withThrottleFeedback } from './relay/send-rate';
import { SendSlots, withSendSlots } from './relay/send-slots';
import { createSesUpstream } from './relay/ses-upstream';
import { createSmtpUpstream, type UpstreamSettings } from './relay/smtp-upstream';
import { Spool } from './relay/spool';
import type { Upstream, UpstreamHooks } from './relay/upstream';
import { watchApplicationFile, type ApplicationFile } from './smtp/application-file';
import { ApplicationPolicy } from './smtp/application-policy';
import { createAuthHandler } from './smtp/auth';
import { watchUserStore, type WatchedUserStore } from './smtp/auth-users';
import { watchCertificate, type CertificateWatch } from './smtp/certificate-watcher';
import { clientKey } from './smtp/client-key';
import { EnvelopeExtensions } from './smtp/envelope-extensions';
import { startListener, type SmtpListener } from './smtp/listeners';
import { NetworkList } from './smtp/networks';
import { ConnectionCounter } from './smtp/rate-limiter';
import { createSessionHooks, isIdleSession, SHUTTING_DOWN } from './smtp/session-hooks';
import { SessionPolicy } from './smtp/session-policy';

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

export interface Gateway {
  /** Where each enabled listener and the ops server actually listen (port 0 in the config is resolved). */
  readonly addresses: Partial<Record<ListenerName, Endpoint>> & { ops: Endpoint };
  readonly metrics: GatewayMetrics;
  readonly registry: Registry;
  /** Where the development upstream writes, when it is in use. */
  readonly devMailDir?: string;
  readonly draining: boolean;
  /**
   * The SIGTERM sequence: /readyz false at once; after drain.delaySeconds the
   * listeners stop accepting and idle sessions get 421; in-flight transactions
   * get up to drain.graceSeconds, then are answered 451 and dropped; then
   * everything closes. Calling it again returns the same promise.
   */
  drain(): Promise<void>;
  /** Closes everything now (in-flight transactions are aborted, never half-delivered). */
  close(): Promise<void>;
}

export interface StartGatewayOptions {
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export async function startGateway(config: GatewayConfig, opts: StartGatewayOptions = {}): Promise<Gateway> {
  const logger = opts.logger ?? createLogger({ level: config.log.level, base: { service: 'smtp-gateway' } });
  const registry = opts.registry ?? new Registry();
  const metrics = createMetrics(registry);
  const hostname = config.hostname || osHostname();
  const drainState = new DrainController();
  const shutdown = new AbortController();
  // Every in-flight transaction listens for the shutdown (bounded by maxConnections);
  // past Node's default of 10 it would print a non-JSON warning into the log stream.
  setMaxListeners(0, shutdown.signal);
  const cleanups: Array<() => unknown> = [];
  let stopping = false;

  try {
    let devUpstream: DevUpstream | undefined;
    let upstreamSettings = config.upstream;
    if (config.devUpstream.enabled) {
      devUpstream = await startDevUpstream(config.devUpstream.dir, logger.child({ component: 'dev-upstream' }));
      cleanups.push(() => devUpstream?.close());
      upstreamSettings = { ...config.upstream, host: devUpstream.host, port: devUpstream.port, security: 'none', usernameFile: '', passwordFile: '' };
      logger.warn('devUpstream.enabled: relaying to the development upstream, nothing is delivered', { dir: devUpstream.dir });
    }
    let sendRate: SendRate | undefined;
    const upstream = createRelayUpstream({ ...upstreamSettings, clientName: hostname }, metrics, logger, () => {
      metrics.upstreamThrottled.inc();
      if (sendRate?.throttled()) logger.warn('upstream throttled: send rate lowered', { component: 'upstream', messagesPerSecond: round(sendRate.current) });
    });
    cleanups.push(() => upstream.close(true));
    const shared = await startSendRate(config.upstream, upstream.slots, metrics, logger);
    sendRate = shared.rate;
    cleanups.push(() => shared.close());
    metrics.setUpstreamPoolSource(() => upstream.poolSnapshot());
    const { spool, leftovers } = await naming(`spool.dir ${JSON.stringify(config.spool.dir)}`, () => Spool.open(config.spool));
    if (leftovers) logger.warn('removed messages an earlier process left in the spool (their clients never got a 250)', { dir: config.spool.dir, files: leftovers });
    metrics.setSpoolSource(() => spool.usage);

    const listeners: SmtpListener[] = [];
    let certificates: CertificateWatch | undefined;
    if (config.tls.certFile) {
      certificates = naming(`tls.certFile ${JSON.stringify(config.tls.certFile)} / tls.keyFile ${JSON.stringify(config.tls.keyFile)}`, () => watchCertificate({
        certFile: config.tls.certFile,
        keyFile: config.tls.keyFile,
        onChange: (pair) => {
          for (const listener of listeners) listener.updateCertificate(pair);
          logger.info('TLS certificate reloaded', { certFile: config.tls.certFile });
        },
        onError: (err) => logger.error('TLS certificate reload failed', { err: err.message }),
      }));
      const watch = certificates;
      cleanups.push(() => watch.close());
    }

    let users: WatchedUserStore | undefined;
    if (config.auth.usersFile) {
      users = naming(`auth.usersFile ${JSON.stringify(config.auth.usersFile)}`, () =>
        watchUserStore(config.auth.usersFile, (err) => logger.error('users file reload failed', { err: err.message })),
      );
      const store = users;
      cleanups.push(() => store.close());
    }
    const keyOf = (ip: string) => clientKey(ip, config.policy.clientPrefixLength);
    const auth = users ? createAuthHandler(config.auth, users, metrics, logger, keyOf) : undefined;
    const policy = new SessionPolicy(config.policy);
    let applicationFile: ApplicationFile = { applications: [] };
    if (config.applications.file) {
      const watch = naming(`applications.file ${JSON.stringify(config.applications.file)}`, () =>
        watchApplicationFile(config.applications.file, {
          onChange: (file) => {
            applications.update(file);
            metrics.applicationReloads.inc({ result: 'success' });
            logger.info('applications file reloaded', { file: config.applications.file, applications: applications.names });
          },
          onError: (err) => {
            metrics.applicationReloads.inc({ result: 'failure' });
            logger.error('applications file reload failed', { err: err.message });
          },
        }),
      );
      cleanups.push(() => watch.close());
      applicationFile = watch.current;
    }
    const applications = new ApplicationPolicy(config.applications.unmatched, applicationFile);
    if (config.applications.file) logger.info('applications loaded', { file: config.applications.file, applications: applications.names, unmatched: config.applications.unmatched });
    const extensions = new EnvelopeExtensions(config.upstream.extensions, Boolean(auth));
    const connections = new ConnectionCounter({ max: config.policy.maxConnections, maxPerKey: config.policy.maxConnectionsPerIp });
    const proxyFrom = config.proxyProtocol.enabled ? new NetworkList(config.proxyProtocol.trustedNetworks) : undefined;

    for (const name of LISTENER_NAMES) {
      const listenerConfig = config.listeners[name];
      if (!listenerConfig.enabled) continue;
      const hooks = createSessionHooks({
        listener: name,
        policy,
        applications,
        extensions,
        auth,
        relay: {
          upstream,
          spool,
          dsnFrom: config.dsn.from || `MAILER-DAEMON@${hostname}`,
          lineEndings: config.policy.lineEndings,
          maxMessageBytes: config.policy.maxMessageBytes,
          messageIdDomain: hostname,
          shutdown: shutdown.signal,
        },
        hostname,
        metrics,
        logger,
        drain: drainState,
        stopping: () => stopping,
      });
      const listener = await startListener({
        name,
        host: config.listenAddress,
        port: listenerConfig.port,
        hostname,
        tls: certificates?.current,
        minTlsVersion: config.tls.minVersion,
        authEnabled: Boolean(auth),
        allowInsecureAuth: config.auth.allowInsecure,
        maxMessageBytes: config.policy.maxMessageBytes,
        advertised: extensions.advertised,
        proxyFrom,
        connections,
        clientKey: keyOf,
        deadlines: config.deadlines,
        hooks,
        metrics,
        logger,
      });
      listeners.push(listener);
      cleanups.push(() => listener.destroy());
      logger.info('listening', { listener: name, address: listener.address.address, port: listener.address.port });
    }

    const ops: OpsServer = await naming(`ops.listenAddress ${JSON.stringify(config.ops.listenAddress)} / ops.port ${config.ops.port}`, () =>
      startOpsServer({
        host: config.ops.listenAddress,
        port: config.ops.port,
        registry,
        isReady: () => !drainState.draining,
        logger,
      }),
    );
    cleanups.push(() => ops.close());
    logger.info('listening', { listener: 'ops', address: config.ops.listenAddress, port: ops.port });
    metrics.ready.set(1);

    const addresses: Gateway['addresses'] = { ops: { address: config.ops.listenAddress, port: ops.port } };
    for (const listener of listeners) addresses[listener.name] = listener.address;

    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        shutdown.abort();
        for (const cleanup of cleanups.reverse()) {
          try {
            await cleanup();
          } catch (err) {
            logger.warn('error while closing', { err: (err as Error).message });
          }
        }
      })();
      return closing;
    };

    let draining: Promise<void> | undefined;
    const drain = () => {
      draining ??= (async () => {
        drainState.start();
        metrics.ready.set(0);
        logger.info('draining', { delaySeconds: config.drain.delaySeconds, graceSeconds: config.drain.graceSeconds, inFlight: drainState.inFlight });
        await sleep(config.drain.delaySeconds * 1000);
        stopping = true;
        await Promise.all(listeners.map((listener) => listener.stopAccepting()));
        const idle = listeners.reduce((sum, listener) => sum + listener.closeSessions(isIdleSession, `${SHUTTING_DOWN.status} ${SHUTTING_DOWN.text}`), 0);
        logger.info('listeners closed', { idleSessionsClosed: idle, inFlight: drainState.inFlight });
        const finished = await drainState.idle(config.drain.graceSeconds * 1000);
        if (!finished) {
          logger.warn('drain grace period over, aborting in-flight transactions', { inFlight: drainState.inFlight });
          shutdown.abort();
          // let the 451 replies reach the clients before their sessions are closed
          await drainState.idle(1000);
        }
        for (const listener of listeners) listener.closeSessions(() => true, `${SHUTTING_DOWN.status} ${SHUTTING_DOWN.text}`);
        await close();
        logger.info('drained', { aborted: !finished });
      })();
      return draining;
    };

    return {
      addresses,
      metrics,
      registry,
      devMailDir: devUpstream?.dir,
      get draining() {
        return drainState.draining;
      },
      drain,
      close,
    };
  } catch (err) {
    for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
    throw err;
  }
}

/**
 * The one place the upstream is built: the configured transport, behind the
 * send slots that apply upstream.messagesPerSecond and bound the wait.
 */
function createRelayUpstream(settings: UpstreamSettings, metrics: GatewayMetrics, logger: Logger, onThrottled: () => void): RelayUpstream {
  const log = logger.child({ component: 'upstream' });
  const hooks: UpstreamHooks = {
    onCredentialFailure: (err) => {
      metrics.upstreamCredentialFailures.inc();
      log.error('upstream refused the gateway credentials', { transport: settings.transport, err: err.message });
    },
    onCredentialsReloaded: () => log.info('upstream credentials reloaded', { usernameFile: settings.usernameFile, passwordFile: settings.passwordFile, caFile: settings.caFile }),
    onCredentialsError: (err) => log.error('upstream credentials reload failed, keeping the values in use', { err: err.message }),
  };
  const transport = settings.transport === 'ses' ? createSesUpstream(settings, hooks) : createSmtpUpstream(settings, hooks);
  // a shared account rate allows no burst: the pods' saved-up seconds would add up past the account's rate
  const burst = settings.accountMaxSendRate > 0 ? 1 : undefined;
  const slots = new SendSlots({ rate: settings.messagesPerSecond, maxConcurrent: settings.maxConnections, maxWaitMs: settings.maxWaitSeconds * 1000, burst });
  return Object.assign(withThrottleFeedback(withSendSlots(transport, slots), onThrottled), { slots });
}

type RelayUpstream = Upstream & { readonly slots: SendSlots };

/** The slots' rate: this pod's share of the account rate, following the ready pods, lowered after throttling. */
async function startSendRate(settings: GatewayConfig['upstream'], slots: SendSlots, metrics: GatewayMetrics, logger: Logger): Promise<{ rate: SendRate; close(): void }> {
  const log = logger.child({ component: 'account-share' });
  const apply = (perSecond: number) => {
    slots.setRate(perSecond);
    metrics.upstreamSendRate.set(perSecond);
  };
  if (settings.accountMaxSendRate === 0) {
    const rate = new SendRate({ ...settings, ...settings.accountShare, peers: 1, apply });
    return { rate, close: () => rate.close() };
  }
  const share = settings.accountShare;
  const where = share.source === 'dns' ? { dnsName: share.dnsName } : share.source === 'file' ? { file: share.file } : {};
  let rate: SendRate | undefined;
  const peers = await watchPeerCount(share, {
    onChange: (count) => {
      // the first answer comes before the rate exists, which then starts from it
      if (!rate) return;
      rate.setPeers(count);
      metrics.accountSharePeers.set(count);
      log.info('ready gateway pods changed', { peers: count, messagesPerSecond: round(rate.current) });
    },
    onError: (err) => {
      metrics.accountSharePeerErrors.inc();
      log.error('cannot count the ready gateway pods, keeping the last count', { source: share.source, ...where, peers: rate?.peers ?? share.peers, err: err.message });
    },
  });
  rate = new SendRate({ ...settings, ...share, peers: peers.current, apply });
  metrics.accountSharePeers.set(peers.current);
  log.info('sharing the account send rate', { accountMaxSendRate: settings.accountMaxSendRate, source: share.source, ...where, peers: peers.current, messagesPerSecond: round(rate.current) });
  const started = rate;
  return {
    rate: started,
    close: () => {
      peers.close();
      started.close();
    },
  };
}

const round = (value: number) => Math.round(value * 1000) / 1000;

/**
 * Runs a start-up step that reads what one setting names (a file, an address), so
 * its failure names the key as well as the path or the resolver's error.
 */
function naming<T>(setting: string, step: () => T): T {
  const rename = (err: unknown): never => {
    throw new Error(`${setting}: ${(err as Error).message}`);
  };
  try {
    const result = step();
    return (result instanceof Promise ? result.catch(rename) : result) as T;
  } catch (err) {
    return rename(err);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
