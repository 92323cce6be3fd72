/**
 * A bounded SMTP fuzzer: seeded random and mutated sessions (long lines, NUL
 * bytes, invalid UTF-8, thousands of headers, garbage after pipelined commands,
 * TLS on the plain port and plain text on the TLS port). Each session ends with
 * "<CRLF>.<CRLF>QUIT<CRLF>" so a server still listening must answer; the verdict
 * is whether it answered or closed, or hung.
 */
import net from 'node:net';
import tls from 'node:tls';

/** Deterministic randomness so a failing session can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FuzzSession {
  readonly kind: string;
  readonly seed: number;
  /** Written one after another, each after the previous was flushed. */
  readonly chunks: Buffer[];
  /** Which listener it targets. */
  readonly listener: 'relay' | 'smtps';
  /** Send before the greeting arrives (as a TLS client would). */
  readonly eager?: boolean;
}

export type FuzzVerdict = 'answered' | 'closed' | 'hung';

export interface FuzzResult {
  readonly session: FuzzSession;
  readonly verdict: FuzzVerdict;
  readonly bytesReceived: number;
}

const TERMINATOR = Buffer.from('\r\n.\r\nQUIT\r\n');
const INVALID_UTF8 = [Buffer.from([0xc3, 0x28]), Buffer.from([0xff, 0xfe]), Buffer.from([0xe2, 0x82]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80])];

type Random = () => number;
const int = (random: Random, min: number, max: number) => min + Math.floor(random() * (max - min + 1));
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)];
const bytes = (random: Random, length: number) => Buffer.from(Array.from({ length }, () => Math.floor(random() * 256)));

function validTransaction(headers = 'From: <f@bench.test>\r\nTo: <r@sink.test>\r\nSubject: fuzz\r\n', body = 'hello\r\n'): string {
  return `EHLO fuzz.test\r\nMAIL FROM:<f@bench.test>\r\nRCPT TO:<r@sink.test>\r\nDATA\r\n${headers}\r\n${body}.\r\n`;
}

function mutate(random: Random, input: Buffer): Buffer {
  const out = [...input];
  const edits = int(random, 1, 12);
  for (let i = 0; i < edits; i += 1) {
    const at = int(random, 0, Math.max(0, out.length - 1));
    switch (int(random, 0, 5)) {
      case 0:
        out[at] ^= 1 << int(random, 0, 7); // bit flip
        break;
      case 1:
        out.splice(at, int(random, 1, 8)); // delete
        break;
      case 2:
        out.splice(at, 0, ...pick(random, [[0x0d], [0x0a], [0x2e], [0x00], [0x0d, 0x0a, 0x2e], [0x0a, 0x2e, 0x0a]])); // line noise
        break;
      case 3:
        out.splice(at, 0, ...out.slice(at, at + int(random, 1, 200))); // duplicate a range
        break;
      case 4:
        out.splice(at, 0, ...pick(random, INVALID_UTF8));
        break;
      default:
        out.splice(at, 0, ...bytes(random, int(random, 1, 32)));
    }
  }
  return Buffer.from(out);
}

/** One session of the given kind, or of a random kind when omitted. */
export function makeFuzzSession(seed: number, clientHello: Buffer, kind?: string): FuzzSession {
  const random = seededRandom(seed);
  const kinds = Object.keys(GENERATORS);
  const chosen = kind ?? pick(random, kinds);
  return { seed, kind: chosen, listener: 'relay', ...GENERATORS[chosen](random, clientHello) };
}

const GENERATORS: Record<string, (random: Random, clientHello: Buffer) => Omit<FuzzSession, 'seed' | 'kind' | 'listener'> & { listener?: 'relay' | 'smtps' }> = {
  'random-bytes': (random) => ({ chunks: Array.from({ length: int(random, 1, 20) }, () => bytes(random, int(random, 1, 2000))) }),
  'long-line': (random) => ({
    chunks: [Buffer.from(pick(random, ['EHLO ', 'MAIL FROM:<', 'RCPT TO:<', 'NOOP ', 'X'])), Buffer.alloc(int(random, 10_000, 1_000_000), 'a'), Buffer.from('\r\n')],
  }),
  'long-header-line': (random) => ({ chunks: [Buffer.from(validTransaction(`Subject: ${'h'.repeat(int(random, 10_000, 600_000))}\r\n`).slice(0, -3))] }),
  'nul-bytes': (random) => {
    const text = Buffer.from(validTransaction());
    for (let i = 0; i < int(random, 1, 10); i += 1) text[int(random, 0, text.length - 1)] = 0;
    return { chunks: [text] };
  },
  'invalid-utf8': (random) => ({
    chunks: [
      Buffer.concat([
        Buffer.from('EHLO '),
        pick(random, INVALID_UTF8),
        Buffer.from('\r\nMAIL FROM:<f'),
        pick(random, INVALID_UTF8),
        Buffer.from('@bench.test> SMTPUTF8\r\nRCPT TO:<r@sink.test>\r\nDATA\r\nSubject: '),
        pick(random, INVALID_UTF8),
        Buffer.from('\r\nFrom: <'),
        pick(random, INVALID_UTF8),
        Buffer.from('@bench.test>\r\n\r\n'),
        bytes(random, 500).map((b) => (b === 0x0d || b === 0x0a ? 0x20 : b)),
        Buffer.from('\r\n'),
      ]),
    ],
  }),
  'many-headers': (random) => {
    const count = int(random, 1000, 10_000);
    const headers = Array.from({ length: count }, (_, i) => `X-Fuzz-${i}: ${'v'.repeat(int(random, 0, 60))}\r\n`).join('');
    return { chunks: [Buffer.from(validTransaction(`From: <f@bench.test>\r\n${headers}`))] };
  },
  'pipelined-garbage': (random) => ({
    chunks: [Buffer.concat([Buffer.from('EHLO fuzz.test\r\nMAIL FROM:<f@bench.test>\r\nRCPT TO:<r@sink.test>\r\nDATA\r\n'), bytes(random, int(random, 1, 5000))])],
  }),
  'command-storm': (random) => ({
    chunks: [
      Buffer.from(
        'EHLO fuzz.test\r\nMAIL FROM:<f@bench.test>\r\n' +
          Array.from({ length: int(random, 100, 3000) }, (_, i) => pick(random, [`RCPT TO:<r${i}@sink.test>`, 'NOOP', 'RSET', 'VRFY root', 'HELP', `X${i}`, 'STARTTLS', 'AUTH PLAIN', '*'])).join('\r\n') +
          '\r\n',
      ),
    ],
  }),
  mutated: (random) => ({ chunks: [mutate(random, Buffer.from(validTransaction()))] }),
  'mutated-split': (random) => {
    const whole = mutate(random, Buffer.from(validTransaction()));
    const chunks: Buffer[] = [];
    for (let at = 0; at < whole.length; ) {
      const size = int(random, 1, 64);
      chunks.push(whole.subarray(at, at + size));
      at += size;
    }
    return { chunks };
  },
  'tls-on-plain-port': (_random, clientHello) => ({ eager: true, chunks: [clientHello] }),
  'plain-on-tls-port': (random) => ({ listener: 'smtps', eager: true, chunks: [Buffer.from(validTransaction()), bytes(random, int(random, 0, 200))] }),
};

export const FUZZ_KINDS = Object.keys(GENERATORS);

/** A genuine TLS ClientHello, captured from node's own TLS client. */
export async function captureClientHello(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        socket.destroy();
        server.close();
        resolve(chunk);
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      const client = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
      client.on('error', () => undefined);
    });
    server.on('error', reject);
  });
}

/** Runs one session; `ports` maps listener names to ports. */
export async function runFuzzSession(session: FuzzSession, ports: Record<string, number>, timeoutMs = 10_000): Promise<FuzzResult> {
  const port = ports[session.listener];
  if (!port) throw new Error(`fuzz session ${session.kind}#${session.seed} wants listener "${session.listener}", which is not open`);
  const socket = net.connect({ host: '127.0.0.1', port });
  let received = 0;
  let receivedAfterEnd = 0;
  let wroteEnd = false;
  let closed = false;
  socket.on('error', () => undefined);
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (wroteEnd) receivedAfterEnd += chunk.length;
  });
  const closedPromise = new Promise<void>((resolve) => socket.once('close', () => ((closed = true), resolve())));
  await new Promise<void>((resolve) => {
    socket.once('connect', resolve);
    socket.once('close', resolve);
  });
  if (!session.eager) {
    // Wait for the greeting (or a close) so the data is not "talking too soon".
    const deadline = Date.now() + timeoutMs;
    while (!received && !closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  for (const chunk of [...session.chunks, TERMINATOR]) {
    if (closed) break;
    if (chunk === TERMINATOR) wroteEnd = true;
    await new Promise<void>((resolve) => {
      if (socket.write(chunk)) return resolve();
      socket.once('drain', resolve);
      socket.once('close', resolve);
    });
  }
  wroteEnd = true;
  const deadline = Date.now() + timeoutMs;
  while (!closed && !receivedAfterEnd && Date.now() < deadline) {
    await Promise.race([closedPromise, new Promise((resolve) => setTimeout(resolve, 20))]);
  }
  const verdict: FuzzVerdict = closed ? 'closed' : receivedAfterEnd ? 'answered' : 'hung';
  socket.destroy();
  return { session, verdict, bytesReceived: received };
}
