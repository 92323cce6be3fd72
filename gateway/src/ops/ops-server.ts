/**
 * The ops HTTP server: /metrics for Prometheus, /healthz for the kubelet's
 * liveness probe, /readyz for its readiness probe (false while draining, so
 * the Service stops sending new connections).
 *
 * It serves only GET and HEAD on those three paths, answers small plain-text
 * bodies, and closes every connection after its response: probes and scrapes
 * come every few seconds, and a kept-alive socket would only delay shutdown.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { OPS_PATHS } from '../config/constants';
import type { Logger } from './logger';

export interface OpsServerOptions {
  /** Address to bind, e.g. 127.0.0.1 locally or 0.0.0.0 in a pod. */
  host: string;
  /** Port to bind; 0 picks a free one (tests). */
  port: number;
  registry: Registry;
  /** True while the gateway accepts mail. */
  isReady: () => boolean;
  /** False when the process is wedged and should be restarted. @default () => true */
  isLive?: () => boolean;
  logger?: Logger;
}

export interface OpsServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Stops listening and drops open connections; resolves once the socket is closed. */
  close(): Promise<void>;
}

const ALLOWED_METHODS = 'GET, HEAD';
const TEXT = 'text/plain; charset=utf-8';
/** A scrape or probe that has not sent its headers by then is not a kubelet or Prometheus. */
const HEADERS_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;

export async function startOpsServer(opts: OpsServerOptions): Promise<OpsServer> {
  const { registry, isReady, logger } = opts;
  const isLive = opts.isLive ?? (() => true);

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger?.error('ops request failed', { path: pathOf(req), err });
      if (!res.headersSent) send(res, req, 500, TEXT, 'internal error');
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 1;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req);
    const route = ROUTES.get(path);
    if (!route) return send(res, req, 404, TEXT, 'not found');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', ALLOWED_METHODS);
      return send(res, req, 405, TEXT, 'method not allowed');
    }
    switch (route) {
      case 'metrics':
        return send(res, req, 200, registry.contentType, await registry.metrics());
      case 'liveness':
        return safeProbe(isLive, logger, 'isLive')
          ? send(res, req, 200, TEXT, 'ok')
          : send(res, req, 503, TEXT, 'unhealthy');
      case 'readiness':
        return safeProbe(isReady, logger, 'isReady')
          ? send(res, req, 200, TEXT, 'ready')
          : send(res, req, 503, TEXT, 'draining');
    }
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new Error(`ops server: cannot listen on ${opts.host}:${opts.port}: ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger?.error('ops server error', { err }));

  // gateway.ts logs where it listens, with the SMTP listeners
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // An in-progress scrape is not worth waiting for at shutdown.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

type Route = keyof typeof OPS_PATHS;
const ROUTES: ReadonlyMap<string, Route> = new Map(Object.entries(OPS_PATHS).map(([route, path]) => [path, route as Route]));

/** The path without the query string, so `/metrics?x=1` is still /metrics. */
function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const end = url.indexOf('?');
  return end === -1 ? url : url.slice(0, end);
}

/** A probe callback that throws counts as "no": a probe must answer, never hang or 500. */
function safeProbe(probe: () => boolean, logger: Logger | undefined, name: string): boolean {
  try {
    return probe() === true;
  } catch (err) {
    logger?.error(`ops server: ${name}() threw`, { err });
    return false;
  }
}

function send(res: ServerResponse, req: IncomingMessage, status: number, contentType: string, body: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Connection', 'close');
  res.end(req.method === 'HEAD' ? undefined : body);
}
