/**
 * PROXY protocol v1 (text) and v2 (binary) for listeners behind a load balancer.
 * smtp-server's own `useProxy` reads only v1, while AWS NLB sends only v2, so the
 * gateway reads the header itself and hands the socket to `SMTPServer.connect()`
 * with the client address from the header. Two layers:
 *
 * - `parseProxyHeader`: a pure, incremental parser over the bytes received so far
 *   (bounded: a v1 line is at most 107 bytes, a v2 header at most its 16-byte
 *   preamble plus its 16-bit length, further capped by `maxBytes`);
 * - `readProxyHeader`: reads exactly one header off a socket and puts any bytes
 *   after it back (`socket.unshift`), so the SMTP session or a TLS handshake that
 *   follows starts on a clean stream.
 *
 * `startsLikeProxyHeader` lets a listener refuse a PROXY header from a peer that
 * is not a trusted load balancer: such a peer could otherwise choose the client
 * address the relay policy is decided on.
 *
 * Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 */
import { isIP, type Socket } from 'node:net';

/** The client and listener addresses a load balancer reports for a proxied TCP connection. */
export interface ProxyHeader {
  sourceAddress: string;
  sourcePort: number;
  destinationAddress: string;
  destinationPort: number;
  version: 1 | 2;
}

export type ProxyParseResult =
  | { status: 'incomplete' }
  /** `header` is null for v1 UNKNOWN and v2 LOCAL (health checks) or non-IP families: use the socket's own addresses. */
  | { status: 'done'; header: ProxyHeader | null; consumed: number };

export interface ProxyParseOptions {
  /**
   * Largest v2 header accepted (preamble, addresses and TLVs).
   * @default 65551 (16 + the largest 16-bit length, i.e. no cap beyond the protocol's own)
   */
  readonly maxBytes?: number;
}

export interface ReadProxyHeaderOptions extends ProxyParseOptions {
  /** Time allowed for the whole header to arrive. */
  readonly timeoutMs: number;
}

/** Why a PROXY header was not accepted, for metrics labels. */
export type ProxyFailure = 'invalid' | 'too_large' | 'timeout' | 'closed';

/** A malformed, oversized, truncated or late PROXY header. */
export class ProxyProtocolError extends Error {
  readonly code = 'PROXY_PROTOCOL';
  constructor(
    message: string,
    readonly reason: ProxyFailure = 'invalid',
  ) {
    super(message);
    this.name = 'ProxyProtocolError';
  }
}

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The spec's worst case: "PROXY UNKNOWN " + 2 × 39 + 2 × 5 + 3 spaces + CRLF. */
export const V1_MAX_BYTES = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_PREAMBLE_BYTES = 16;
export const V2_MAX_BYTES = V2_PREAMBLE_BYTES + 0xffff;
/** A prefix this long of a signature already cannot be an SMTP command. */
const MIN_PARTIAL_SIGNATURE = 5;

const V2_COMMAND_LOCAL = 0x0;
const V2_COMMAND_PROXY = 0x1;
const V2_FAMILY_UNSPEC = 0x0;
const V2_FAMILY_INET = 0x1;
const V2_FAMILY_INET6 = 0x2;
const V2_TRANSPORT_UNSPEC = 0x0;
const V2_TRANSPORT_STREAM = 0x1;

/** Whether the first `n` bytes of `chunk` match the start of `signature`. */
function matchesPrefix(chunk: Buffer, signature: Buffer): boolean {
  const n = Math.min(chunk.length, signature.length);
  return chunk.compare(signature, 0, n, 0, n) === 0;
}

/**
 * Whether a connection's first bytes look like a PROXY header (v1 `PROXY ` or the
 * v2 signature, or at least 5 bytes of either when the chunk is shorter). SMTP
 * clients wait for the greeting and no SMTP command starts this way, so a match
 * from an untrusted peer is an attempt to choose its own client address.
 */
export function startsLikeProxyHeader(chunk: Buffer): boolean {
  for (const signature of [V1_PREFIX, V2_SIGNATURE]) {
    if (chunk.length >= Math.min(signature.length, MIN_PARTIAL_SIGNATURE) && matchesPrefix(chunk, signature)) return true;
  }
  return false;
}

/**
 * Calls `onDetected` when the first bytes `socket` receives look like a PROXY
 * header, for connections from peers that are not trusted load balancers; the
 * caller should reply 421 and close. That first chunk is then withheld from every
 * other reader, so smtp-server never acts on commands pipelined behind the
 * header. (A prepended 'data' listener could not do this: an event goes to all
 * listeners, so the one 'data' emit is intercepted instead.) Only the first
 * chunk is inspected; later ones flow untouched.
 */
export function onUntrustedProxyHeader(socket: Socket, onDetected: (chunk: Buffer) => void): void {
  const emit = socket.emit as (this: Socket, event: string | symbol, ...args: unknown[]) => boolean;
  socket.emit = function interceptFirstData(this: Socket, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'data') return emit.call(this, event, ...args);
    socket.emit = emit as Socket['emit'];
    const chunk = args[0];
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : (chunk as Buffer);
    if (!startsLikeProxyHeader(bytes)) return emit.call(this, event, ...args);
    onDetected(bytes);
    return false;
  } as Socket['emit'];
}

/**
 * Parses a PROXY header at the start of `buf` (all bytes received so far).
 * @throws ProxyProtocolError when the bytes cannot become a valid header.
 */
export function parseProxyHeader(buf: Buffer, options: ProxyParseOptions = {}): ProxyParseResult {
  if (buf.length === 0) return { status: 'incomplete' };
  if (matchesPrefix(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? { status: 'incomplete' } : parseV1(buf);
  if (matchesPrefix(buf, V2_SIGNATURE)) {
    return buf.length < V2_SIGNATURE.length ? { status: 'incomplete' } : parseV2(buf, options.maxBytes ?? V2_MAX_BYTES);
  }
  throw new ProxyProtocolError(`Expected a PROXY protocol header, got ${describeBytes(buf)}`);
}

function parseV1(buf: Buffer): ProxyParseResult {
  const lf = buf.indexOf(0x0a, 0);
  if (lf === -1 || lf >= V1_MAX_BYTES) {
    if (buf.length >= V1_MAX_BYTES) throw new ProxyProtocolError(`PROXY v1 header has no CRLF within ${V1_MAX_BYTES} bytes`, 'too_large');
    return { status: 'incomplete' };
  }
  if (lf === 0 || buf[lf - 1] !== 0x0d) throw new ProxyProtocolError('PROXY v1 header must end with CRLF, found a bare LF');
  const line = buf.toString('latin1', 0, lf - 1);
  const consumed = lf + 1;
  const fields = line.split(' ');
  const protocol = fields[1];
  // UNKNOWN: the proxy could not tell; the rest of the line is to be ignored
  if (protocol === 'UNKNOWN') return { status: 'done', header: null, consumed };
  if (protocol !== 'TCP4' && protocol !== 'TCP6') {
    throw new ProxyProtocolError(`PROXY v1 protocol ${JSON.stringify(protocol ?? '')} is not TCP4, TCP6 or UNKNOWN`);
  }
  if (fields.length !== 6) {
    throw new ProxyProtocolError(`PROXY v1 header ${JSON.stringify(line)} needs 6 space-separated fields, has ${fields.length}`);
  }
  const family = protocol === 'TCP4' ? 4 : 6;
  const [, , sourceAddress, destinationAddress, sourcePort, destinationPort] = fields;
  for (const [what, address] of [['source', sourceAddress], ['destination', destinationAddress]] as const) {
    if (isIP(address) !== family) {
      throw new ProxyProtocolError(`PROXY v1 ${what} address ${JSON.stringify(address)} is not an IPv${family} address (${protocol})`);
    }
  }
  return {
    status: 'done',
    consumed,
    header: {
      sourceAddress,
      sourcePort: parseV1Port(sourcePort, 'source'),
      destinationAddress,
      destinationPort: parseV1Port(destinationPort, 'destination'),
      version: 1,
    },
  };
}

function parseV1Port(text: string, what: string): number {
  const port = Number(text);
  if (!/^(0|[1-9]\d{0,4})$/.test(text) || port > 65535) {
    throw new ProxyProtocolError(`PROXY v1 ${what} port ${JSON.stringify(text)} is not a number from 0 to 65535`);
  }
  return port;
}

function parseV2(buf: Buffer, maxBytes: number): ProxyParseResult {
  if (buf.length < V2_PREAMBLE_BYTES) return { status: 'incomplete' };
  const versionCommand = buf[12];
  const version = versionCommand >> 4;
  const command = versionCommand & 0x0f;
  if (version !== 2) throw new ProxyProtocolError(`PROXY v2 header has version ${version}, expected 2`);
  if (command !== V2_COMMAND_LOCAL && command !== V2_COMMAND_PROXY) {
    throw new ProxyProtocolError(`PROXY v2 header has command 0x${command.toString(16)}, expected LOCAL (0x0) or PROXY (0x1)`);
  }
  const family = buf[13] >> 4;
  const transport = buf[13] & 0x0f;
  const length = buf.readUInt16BE(14);
  const consumed = V2_PREAMBLE_BYTES + length;
  if (consumed > maxBytes) throw new ProxyProtocolError(`PROXY v2 header of ${consumed} bytes exceeds the limit of ${maxBytes} bytes`, 'too_large');
  if (buf.length < consumed) return { status: 'incomplete' };
  // LOCAL: the balancer speaking for itself (a health check); its addresses are the socket's
  if (command === V2_COMMAND_LOCAL) return { status: 'done', header: null, consumed };
  if (transport !== V2_TRANSPORT_STREAM && transport !== V2_TRANSPORT_UNSPEC) {
    throw new ProxyProtocolError(`PROXY v2 header carries transport 0x${transport.toString(16)}; only TCP (STREAM) can carry SMTP`);
  }
  if (family === V2_FAMILY_INET || family === V2_FAMILY_INET6) {
    const addressBytes = family === V2_FAMILY_INET ? 4 : 16;
    const needed = 2 * addressBytes + 4;
    if (length < needed) {
      throw new ProxyProtocolError(`PROXY v2 header is too short for ${family === V2_FAMILY_INET ? 'IPv4' : 'IPv6'} addresses: length ${length}, need ${needed}`);
    }
    const at = V2_PREAMBLE_BYTES;
    const format = family === V2_FAMILY_INET ? formatIPv4 : formatIPv6;
    // any bytes after the addresses are TLVs (AWS sends its VPC endpoint id there); none affect relaying
    return {
      status: 'done',
      consumed,
      header: {
        sourceAddress: format(buf, at),
        destinationAddress: format(buf, at + addressBytes),
        sourcePort: buf.readUInt16BE(at + 2 * addressBytes),
        destinationPort: buf.readUInt16BE(at + 2 * addressBytes + 2),
        version: 2,
      },
    };
  }
  if (family === V2_FAMILY_UNSPEC || family === 0x3) {
    // unspecified or UNIX sockets: no IP to report, so the receiver uses the socket's own
    return { status: 'done', header: null, consumed };
  }
  throw new ProxyProtocolError(`PROXY v2 header has unknown address family 0x${family.toString(16)}`);
}

function formatIPv4(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

/** RFC 5952 text (lower case, leading zeros dropped, longest zero run as ::), IPv4-mapped as dotted IPv4. */
function formatIPv6(buf: Buffer, at: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(at + 2 * i));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatIPv4(buf, at + 12)}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; ) {
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = Math.max(end, start + 1);
  }
  const hex = (list: number[]) => list.map((g) => g.toString(16)).join(':');
  if (bestStart === -1) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

function describeBytes(buf: Buffer): string {
  const head = buf.subarray(0, 16);
  const printable = head.every((b) => (b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d);
  return printable ? JSON.stringify(head.toString('latin1')) : `bytes ${head.toString('hex')}`;
}

/**
 * Reads one PROXY header off `socket` and leaves every byte after it in the
 * socket's buffer. Resolves with the header (null for LOCAL/UNKNOWN); rejects
 * with a ProxyProtocolError on bad input, timeout, or a peer that closes first.
 * The socket is not closed on failure: the caller decides how to refuse it.
 */
export function readProxyHeader(socket: Socket, options: ReadProxyHeaderOptions): Promise<ProxyHeader | null> {
  return new Promise((resolve, reject) => {
    let received: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (error: Error | null, header: ProxyHeader | null = null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('readable', onReadable);
      socket.removeListener('error', onError);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
      if (error) reject(error);
      else resolve(header);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
        let result: ProxyParseResult;
        try {
          result = parseProxyHeader(received, options);
        } catch (error) {
          finish(error as Error);
          return;
        }
        if (result.status === 'done') {
          const rest = received.subarray(result.consumed);
          // unshift before settling so the next reader finds the bytes where they arrived
          if (rest.length > 0) socket.unshift(rest);
          finish(null, result.header);
          return;
        }
      }
    };
    const onError = (error: Error) => finish(new ProxyProtocolError(`Connection failed before the PROXY header was read: ${error.message}`, 'closed'));
    const onEnd = () => finish(new ProxyProtocolError(`Connection closed after ${received.length} bytes, before a complete PROXY header`, 'closed'));
    const timer = setTimeout(
      () => finish(new ProxyProtocolError(`No complete PROXY header within ${options.timeoutMs} ms (${received.length} bytes received)`, 'timeout')),
      options.timeoutMs,
    );
    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    // data may already be buffered from before we listened
    if (socket.readableLength > 0) onReadable();
  });
}
