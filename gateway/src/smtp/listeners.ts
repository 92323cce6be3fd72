/**
 * The SMTP listeners. Each is an smtp-server instance fed by our own net.Server,
 * so that before a session starts the gateway can read a PROXY header from a
 * trusted load balancer (smtp-server parses only v1), learn the real client
 * address, and apply the connection limits to it. smtp-server's own listening
 * socket is never used.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { AUTH_METHODS, type ListenerName } from '../config/constants';
import type { ConnectionRefusedReason, GatewayMetrics } from '../ops/metrics';
import type { Logger } from '../ops/logger';
import type { CertificatePair } from './certificate-watcher';
import type { AdvertisedExtensions } from './envelope-extensions';
import type { NetworkList } from './networks';
import { ProxyProtocolError, onUntrustedProxyHeader, readProxyHeader } from './proxy-protocol';
import type { ConnectionCounter } from './rate-limiter';
import { SessionDeadlines, type DeadlineSettings } from './session-deadlines';
import { observeConnection } from './smtp-server-adapter';

/** The smtp-server hooks a listener runs (see session-hooks.ts). */
export type SessionHooks = Pick<SMTPServerOptions, 'onConnect' | 'onSecure' | 'onAuth' | 'onMailFrom' | 'onRcptTo' | 'onData' | 'onClose'>;

/** How long a late 421 may take to reach a client before its socket is destroyed (it may not be reading). */
const CLOSE_LINGER_MS = 1000;

export interface ListenerSettings {
  readonly name: ListenerName;
  readonly host: string;
  readonly port: number;
  /** Server name in the greeting. */
  readonly hostname: string;
  /** Current TLS pair; undefined means no TLS at all (no STARTTLS, no implicit TLS). */
  readonly tls?: CertificatePair;
  readonly minTlsVersion: 'TLSv1.2' | 'TLSv1.3';
  /** Offer AUTH (a users file is configured). */
  readonly authEnabled: boolean;
  readonly allowInsecureAuth: boolean;
  readonly maxMessageBytes: number;
  /** Which of 8BITMIME, SMTPUTF8, DSN, REQUIRETLS the EHLO advertises. */
  readonly advertised: AdvertisedExtensions;
  /** PROXY headers are read from these peers (and refused from all others); undefined = PROXY protocol off. */
  readonly proxyFrom?: NetworkList;
  readonly proxyTimeoutMs?: number;
  readonly connections: ConnectionCounter;
  /** The key a client address is counted under (smtp/client-key.ts: IPv6 by prefix). */
  readonly clientKey: (ip: string) => string;
  readonly hooks: SessionHooks;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** The session deadlines (config.deadlines). */
  readonly deadlines: DeadlineSettings;
}

export interface SmtpListener {
  readonly name: ListenerName;
  readonly address: { address: string; port: number };
  /** Swaps in a renewed certificate for new handshakes. */
  updateCertificate(pair: CertificatePair): void;
  /** Stops accepting connections; open sessions continue. */
  stopAccepting(): Promise<void>;
  /** Sends 421 to every session the predicate picks and closes it. */
  closeSessions(pick: (session: SMTPServerSession) => boolean, text: string): number;
  /** Closes everything at once. */
  destroy(): Promise<void>;
}

export async function startListener(settings: ListenerSettings): Promise<SmtpListener> {
  const { name, metrics, logger } = settings;
  const implicitTls = name === 'smtps';
  if ((implicitTls || name === 'submission') && !settings.tls) {
    throw new Error(
      `listeners.${name} needs a TLS certificate: set tls.certFile and tls.keyFile, or disable listeners.${name}.enabled`,
    );
  }
  if (name === 'submission' && !settings.authEnabled) {
    throw new Error('listeners.submission requires AUTH: set auth.usersFile, or disable listeners.submission.enabled');
  }
  const disabledCommands = [...(settings.tls ? [] : ['STARTTLS']), ...(settings.authEnabled ? [] : ['AUTH'])];
  const authNeedsTls = settings.authEnabled && !settings.allowInsecureAuth && !implicitTls;
  // Connection slots by session id. smtp-server strips every listener from the raw
  // socket when it starts TLS (implicit or STARTTLS), so that socket's 'close' never
  // reaches us for TLS sessions; its onClose hook does, for every session.
  const releases = new Map<string, () => void>();
  const deadlines = new Map<string, SessionDeadlines>();
  const secured = new WeakSet<SMTPServerSession>();
  const smtp = new SMTPServer({
    name: settings.hostname,
    banner: 'smtp-gateway',
    secure: implicitTls,
    // our own net.Server hands over plain sockets; smtp-server runs the handshake itself
    needsUpgrade: implicitTls,
    hideSTARTTLS: !settings.tls,
    disabledCommands,
    ...(settings.tls ? { key: settings.tls.key, cert: settings.tls.cert } : {}),
    minVersion: settings.minTlsVersion,
    authMethods: [...AUTH_METHODS],
    // submission always requires AUTH, but the hooks' MAIL FROM says so (530, counted), before and after
    // STARTTLS alike; smtp-server's own check would answer without the gateway seeing it
    authOptional: true,
    allowInsecureAuth: settings.allowInsecureAuth,
    size: settings.maxMessageBytes,
    ...settings.advertised,
    disableReverseLookup: true,
    // smtp-server's own timer is an idle timer that every byte resets; the deadlines
    // (session-deadlines.ts) bound a session, this only backs them up
    socketTimeout: settings.deadlines.sessionMaxSeconds * 1000,
    logger: false,
    ...settings.hooks,
    // AUTH is not even advertised before TLS (unless allowed): a client that sends
    // AUTH PLAIN with an initial response would otherwise put its password on the
    // wire in clear before hearing the refusal.
    onConnect(session, callback) {
      if (authNeedsTls) session.disabledCommands = [...disabledCommands, 'AUTH'];
      if (settings.hooks.onConnect) settings.hooks.onConnect(session, callback);
      else callback();
    },
    onSecure(socket, session, callback) {
      if (authNeedsTls) session.disabledCommands = [...disabledCommands];
      // smtp-server runs onSecure twice for an implicit-TLS socket it upgrades itself
      // (after the handshake, and again as the session starts): pass it on once
      if (!settings.hooks.onSecure || secured.has(session)) return callback();
      secured.add(session);
      settings.hooks.onSecure(socket, session, callback);
    },
    onAuth(auth, session, callback) {
      if (!settings.hooks.onAuth) return callback(new Error('AUTH is not enabled'));
      settings.hooks.onAuth(auth, session, (err, response) => {
        if (!err && response?.user) deadlines.get(session.id)?.established();
        callback(err, response);
      });
    },
    onMailFrom(address, session, callback) {
      const accept = (err?: Error | null) => {
        if (!err) deadlines.get(session.id)?.established();
        callback(err);
      };
      if (settings.hooks.onMailFrom) settings.hooks.onMailFrom(address, session, accept);
      else accept();
    },
    onData(stream, session, callback) {
      const clock = deadlines.get(session.id);
      clock?.dataStarted(stream as typeof stream & { byteLength?: number });
      const answer: typeof callback = (err, message) => {
        callback(err, message);
        // smtp-server writes the reply once the message is read to its end: the next deadline starts after it
        if (stream.readableEnded) clock?.dataAnswered();
        else stream.once('end', () => clock?.dataAnswered());
      };
      if (settings.hooks.onData) settings.hooks.onData(stream, session, answer);
      else stream.on('end', () => answer(null));
    },
    onClose(session, callback) {
      deadlines.get(session.id)?.close();
      deadlines.delete(session.id);
      releases.get(session.id)?.();
      settings.hooks.onClose?.(session, callback);
    },
  });
  smtp.on('error', (err: Error & { code?: string }) => {
    // successful handshakes are counted in onSecure; smtp-server reports failed ones only as errors
    if (/SSL|TLS/i.test(`${err.code ?? ''} ${err.message}`)) metrics.tlsHandshakes.inc({ listener: name, result: 'failure' });
    logger.debug('smtp session error', { listener: name, err: err.message, code: err.code });
  });

  const net = createServer((socket) => {
    accept(socket).catch((err: Error) => {
      logger.error('connection setup failed', { listener: name, err: err.message });
      refuse(socket, 'internal_error');
    });
  });
  net.on('error', (err) => logger.error('listener error', { listener: name, err: err.message }));

  const refuse = (socket: Socket, reason: ConnectionRefusedReason, reply?: string, clientKey?: string) => {
    metrics.connectionsRefused.inc({ listener: name, reason });
    logger.info('connection refused', { listener: name, client: socket.remoteAddress, clientKey, reason });
    socket.on('error', () => undefined);
    // a reply can only be written in plain text; on implicit TLS the client just sees the close
    if (reply && !implicitTls) socket.end(`${reply}\r\n`);
    else socket.destroy();
    setTimeout(() => socket.destroy(), 1000).unref();
  };

  async function accept(socket: Socket): Promise<void> {
    metrics.connections.inc({ listener: name });
    socket.on('error', () => undefined);
    let remoteAddress = socket.remoteAddress ?? '';
    let remotePort = socket.remotePort ?? 0;
    const fromProxy = settings.proxyFrom?.contains(remoteAddress) ?? false;
    if (fromProxy) {
      try {
        const header = await readProxyHeader(socket, { timeoutMs: settings.proxyTimeoutMs ?? 5000 });
        if (header) {
          remoteAddress = header.sourceAddress;
          remotePort = header.sourcePort;
        }
      } catch (err) {
        const timedOut = err instanceof ProxyProtocolError && err.reason === 'timeout';
        logger.info('PROXY header refused', { listener: name, peer: socket.remoteAddress, err: (err as Error).message });
        return refuse(socket, timedOut ? 'proxy_timeout' : 'proxy_invalid');
      }
    }
    const client = settings.clientKey(remoteAddress);
    const verdict = settings.connections.acquire(client);
    if (verdict !== 'ok') {
      return refuse(
        socket,
        verdict === 'total' ? 'max_connections' : 'max_per_ip',
        verdict === 'total' ? '421 4.7.0 Too many connections, try again later' : '421 4.7.0 Too many connections from your address, try again later',
        client,
      );
    }
    metrics.connectionsOpen.inc({ listener: name });
    const id = randomBytes(10).toString('hex');
    const release = () => {
      if (!releases.delete(id)) return;
      settings.connections.release(client);
      metrics.connectionsOpen.dec({ listener: name });
    };
    releases.set(id, release);
    socket.once('close', release);
    coalesceWrites(socket);
    if (!fromProxy && !implicitTls) {
      // A PROXY header from anyone else is an attempt to choose its own client
      // address; the chunk carrying it (and anything pipelined behind it) is
      // withheld from smtp-server, so none of it is ever run as a command.
      onUntrustedProxyHeader(socket, () => refuse(socket, 'proxy_untrusted'));
    }
    smtp.connect(socket, { id, remoteAddress, remotePort });
    const clock = new SessionDeadlines(settings.deadlines, (deadline) => {
      metrics.deadlinesExpired.inc({ listener: name, deadline });
      logger.info('deadline expired', { listener: name, session: id, client: remoteAddress, deadline });
      connection.close421(
        deadline === 'commands' ? `4.7.0 ${settings.hostname} Error: too many commands` : `4.4.2 ${settings.hostname} Error: timeout exceeded`,
      );
      setTimeout(() => socket.destroy(), CLOSE_LINGER_MS).unref();
    });
    const connection = observeConnection(smtp, id, { command: () => clock.command(), ready: () => clock.ready() });
    deadlines.set(id, clock);
    socket.once('close', () => clock.close());
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new Error(`listenAddress ${JSON.stringify(settings.host)} / listeners.${name}.port ${settings.port}: ${err.message}`));
    net.once('error', onError);
    net.listen(settings.port, settings.host, () => {
      net.off('error', onError);
      resolve();
    });
  });
  const bound = net.address() as AddressInfo;

  return {
    name,
    address: { address: bound.address, port: bound.port },
    updateCertificate(pair) {
      smtp.updateSecureContext({ key: pair.key, cert: pair.cert });
    },
    stopAccepting: () => closeNet(net),
    closeSessions(pick, text) {
      let closed = 0;
      for (const connection of smtp.connections) {
        if (pick(connection.session)) {
          connection.send(421, text);
          closed++;
        }
      }
      return closed;
    },
    async destroy() {
      const closing = closeNet(net);
      for (const connection of smtp.connections) connection.close();
      await closing;
    },
  };
}

/**
 * smtp-server writes every reply on its own; to a pipelining client the replies
 * to MAIL, RCPT and DATA come out in the same tick, and each write is a syscall
 * that wakes the client. Corking until the end of the tick sends them as one.
 * (After STARTTLS smtp-server writes to the TLS socket, which batches by itself.)
 */
function coalesceWrites(socket: Socket): void {
  const write = socket.write;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  socket.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return write.apply(this, args);
  } as Socket['write'];
}

/** Stops listening; net.Server's own close callback would also wait for every open session. */
function closeNet(server: Server): Promise<void> {
  if (server.listening) server.close();
  return Promise.resolve();
}
