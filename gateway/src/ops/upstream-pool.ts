/**
 * Reads the state of nodemailer's SMTP pool for smtp_gateway_upstream_pool.
 *
 * SMTPPool's public API only tells how many messages it still holds
 * (pendingCount) and whether it can take another (isIdle); how many
 * connections are busy or idle lives in its `_connections` and `_queue`
 * fields. Reading them is the only way to see pool use; if a nodemailer
 * release renames them this returns the pending count as `queued` rather
 * than failing a scrape.
 */
import type { UpstreamPoolSnapshot } from './metrics';

interface PoolInternals {
  _connections?: unknown;
  _queue?: unknown;
  pendingCount?: () => number;
}

/**
 * @param transport the transporter createTransport({ pool: true }) returns, or its SMTPPool
 * @returns undefined when `transport` is not a nodemailer pool
 */
export function nodemailerPoolSnapshot(transport: unknown): UpstreamPoolSnapshot | undefined {
  const pool = findPool(transport);
  if (!pool) return undefined;
  const connections = Array.isArray(pool._connections) ? (pool._connections as Array<{ available?: unknown }>) : undefined;
  const queue = Array.isArray(pool._queue) ? pool._queue : undefined;
  if (connections && queue) {
    const idle = connections.filter((connection) => connection?.available === true).length;
    return { active: connections.length - idle, idle, queued: queue.length };
  }
  const pending = typeof pool.pendingCount === 'function' ? pool.pendingCount() : 0;
  return { active: 0, idle: 0, queued: pending };
}

function findPool(transport: unknown): PoolInternals | undefined {
  if (!transport || typeof transport !== 'object') return undefined;
  const candidate = transport as PoolInternals & { transporter?: unknown };
  if (typeof candidate.pendingCount === 'function') return candidate;
  const inner = candidate.transporter as PoolInternals | undefined;
  if (inner && typeof inner === 'object' && typeof inner.pendingCount === 'function') return inner;
  return undefined;
}
