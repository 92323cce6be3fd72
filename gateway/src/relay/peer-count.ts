/**
 * How many gateway pods of the release are ready now, the divisor of the
 * account's send rate (send-rate.ts). Three sources, one answer:
 * - dns: the A/AAAA records of the chart's headless Service, which lists only
 *   ready pods (publishNotReadyAddresses false); re-resolved every refreshSeconds.
 * - file: a file holding the count, re-read every refreshSeconds (processes
 *   outside Kubernetes, e.g. three gateways on one host).
 * - static: a fixed count.
 * A failed lookup keeps the last count (and says so) rather than guessing: a
 * count that jumps down would let every pod send more than its share.
 */
import { readFile } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import type { GatewayConfig } from '../config/schema';

export type AccountShareSettings = GatewayConfig['upstream']['accountShare'];

export interface PeerCountHooks {
  /** The count changed (also for a first answer other than `peers`). */
  readonly onChange: (peers: number) => void;
  /** A lookup failed; the last count stays. */
  readonly onError: (error: Error) => void;
}

export interface PeerCount {
  /** Ready gateway pods now, at least 1 (this one). */
  readonly current: number;
  close(): void;
}

/** DNS answers meaning "no ready pod is listed" rather than "the lookup failed". */
const NO_RECORDS = new Set(['ENOTFOUND', 'ENODATA']);

/**
 * Starts watching; resolves once the first answer is in (or has failed, in which
 * case the count is `settings.peers`, the documented assumption until an answer).
 */
export async function watchPeerCount(settings: AccountShareSettings, hooks: PeerCountHooks): Promise<PeerCount> {
  let current = settings.peers;
  const lookup = peerLookup(settings);
  let looking = false;
  const refresh = async () => {
    // a slow lookup (DNS retries) must not be overtaken by the next one and then overwrite its newer answer
    if (looking) return;
    looking = true;
    try {
      const next = Math.max(1, await lookup());
      if (next === current) return;
      current = next;
      hooks.onChange(next);
    } catch (err) {
      hooks.onError(err as Error);
    } finally {
      looking = false;
    }
  };
  if (settings.source !== 'static') await refresh();
  const timer = settings.source === 'static' ? undefined : setInterval(() => void refresh(), settings.refreshSeconds * 1000);
  timer?.unref();
  return {
    get current() {
      return current;
    },
    close: () => clearInterval(timer),
  };
}

function peerLookup(settings: AccountShareSettings): () => Promise<number> {
  switch (settings.source) {
    case 'static':
      return async () => settings.peers;
    case 'file':
      return async () => readCountFile(settings.file);
    case 'dns': {
      // its own resolver, so a lookup is bounded however the host's resolver is set up
      const resolver = new Resolver({ timeout: 2000, tries: 2 });
      if (settings.dnsServers.length) resolver.setServers(settings.dnsServers);
      return async () => {
        // a fully qualified name (the chart's ends in a dot): resolve4 applies no search domains
        const [v4, v6] = await Promise.all([records(() => resolver.resolve4(settings.dnsName)), records(() => resolver.resolve6(settings.dnsName))]);
        return new Set([...v4, ...v6]).size;
      };
    }
  }
}

async function records(resolve: () => Promise<string[]>): Promise<string[]> {
  try {
    return await resolve();
  } catch (err) {
    if (NO_RECORDS.has((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw err;
  }
}

async function readCountFile(file: string): Promise<number> {
  const text = (await readFile(file, 'utf8')).trim();
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new Error(`upstream.accountShare.file ${JSON.stringify(file)}: expected a whole number of pods >= 1, got ${JSON.stringify(text.slice(0, 40))}`);
  }
  return Number(text);
}
