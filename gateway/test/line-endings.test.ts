import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { BareLineEndingError, LineEndingGuard, type LineEndingMode } from '../src/relay/line-endings';

/** Runs `chunks` through a guard; returns the output or the error, and the guard. */
function run(mode: LineEndingMode, chunks: Array<string | Buffer>): { out: Buffer; error?: BareLineEndingError; guard: LineEndingGuard } {
  const guard = new LineEndingGuard({ mode });
  const out: Buffer[] = [];
  const emit = (chunk: Buffer) => out.push(chunk);
  try {
    for (const c of chunks) guard.write(typeof c === 'string' ? Buffer.from(c, 'latin1') : c, emit);
    guard.end(emit);
    return { out: Buffer.concat(out), guard };
  } catch (error) {
    return { out: Buffer.concat(out), error: error as BareLineEndingError, guard };
  }
}

/** Byte-by-byte oracle: the first bare line ending, or null. */
function firstBare(data: Buffer): { which: 'CR' | 'LF'; offset: number } | null {
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 0x0d && data[i + 1] !== 0x0a) return { which: 'CR', offset: i };
    if (data[i] === 0x0a && data[i - 1] !== 0x0d) return { which: 'LF', offset: i };
  }
  return null;
}

/** Byte-by-byte oracle for normalize mode. */
function normalizeOracle(data: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 0x0d) {
      out.push(0x0d, 0x0a);
      if (data[i + 1] === 0x0a) i++;
    } else if (data[i] === 0x0a) out.push(0x0d, 0x0a);
    else out.push(data[i]);
  }
  return Buffer.from(out);
}

/** Deterministic pseudo-random generator so failures reproduce. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function randomMessage(random: () => number, length: number): Buffer {
  const alphabet = [0x0d, 0x0a, 0x41, 0x2e, 0x20];
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = random() < 0.6 ? 0x61 : alphabet[Math.floor(random() * alphabet.length)];
  return bytes;
}

function randomChunks(random: () => number, data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < data.length; ) {
    const size = 1 + Math.floor(random() * 8);
    chunks.push(data.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

describe.each(['reject', 'normalize'] as const)('LineEndingGuard %s mode on clean data', (mode) => {
  it('passes clean chunks through untouched (the same Buffer objects)', () => {
    const guard = new LineEndingGuard({ mode });
    const chunks = [Buffer.from('Subject: hi\r\n\r\n'), Buffer.from('body\r\n')];
    const seen: Buffer[] = [];
    const emit = (c: Buffer) => seen.push(c);
    for (const chunk of chunks) guard.write(chunk, emit);
    guard.end(emit);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(chunks[0]);
    expect(seen[1]).toBe(chunks[1]);
  });
});

describe('LineEndingGuard reject mode', () => {
  it('accepts a CRLF split across chunks, in any number of pieces', async () => {
    const { out, error } = run('reject', ['line one\r', '\nline two\r\n']);
    expect(error).toBeUndefined();
    expect(out.toString('latin1')).toBe('line one\r\nline two\r\n');
    expect((run('reject', ['a\r', '\n', '\r', '\n', 'b\r', '\n'])).error).toBeUndefined();
    expect((run('reject', ['\r\n', '\r\n'])).error).toBeUndefined();
  });

  it.each([
    [['abc\ndef\r\n'], 'LF', 3],
    [['\nabc'], 'LF', 0],
    [['abc\r\n', '\n'], 'LF', 5],
    [['abc\r', 'x\r\n'], 'CR', 3],
    [['abc\r', '\r\n'], 'CR', 3],
    [['ab\rc\r\n'], 'CR', 2],
    [['abc\r'], 'CR', 3],
    [['ok\r\n', '\r'], 'CR', 4],
    [['\r\r\n'], 'CR', 0],
    [['ok\r\n', 'ok\r\n', 'x\n.\r\n'], 'LF', 9],
    [['a\r\nb\n\rc'], 'LF', 4],
  ] as const)('finds the first bare line ending in %j: %s at %d', async (chunks, which, offset) => {
    const { error } = run('reject', [...chunks]);
    expect(error).toBeInstanceOf(BareLineEndingError);
    expect(error).toMatchObject({ code: 'BARE_LINE_ENDING', which, offset, responseCode: 550 });
    expect(error?.message).toBe(`Message data contains a bare ${which} at byte ${offset}; every line must end with CRLF`);
  });

  it('agrees with a byte-by-byte oracle on random data and random chunking', async () => {
    const random = prng(42);
    for (let round = 0; round < 400; round++) {
      const data = randomMessage(random, 1 + Math.floor(random() * 60));
      const expected = firstBare(data);
      const { error } = run('reject', randomChunks(random, data));
      const label = JSON.stringify(data.toString('latin1'));
      if (expected) expect(error, label).toMatchObject(expected);
      else expect(error, label).toBeUndefined();
    }
  });
});

describe('LineEndingGuard normalize mode', () => {
  it.each([
    [['a\nb\rc\r\n'], 'a\r\nb\r\nc\r\n', 2],
    [['a\r', '\nb'], 'a\r\nb', 0],
    [['a\r', 'b'], 'a\r\nb', 1],
    [['a\r', '\r', '\n'], 'a\r\n\r\n', 1],
    [['a\r'], 'a\r\n', 1],
    [['\n\n'], '\r\n\r\n', 2],
    [['a\r', '\n\n'], 'a\r\n\r\n', 1],
    [['x\n.\r\nMAIL FROM:<evil@example.com>\r\n'], 'x\r\n.\r\nMAIL FROM:<evil@example.com>\r\n', 1],
  ] as const)('rewrites %j to %j', (chunks, expected, count) => {
    const { out, error, guard } = run('normalize', [...chunks]);
    expect(error).toBeUndefined();
    expect(out.toString('latin1')).toBe(expected);
    expect(guard.normalized).toBe(count);
  });

  it('agrees with a byte-by-byte oracle on random data and random chunking', async () => {
    const random = prng(7);
    for (let round = 0; round < 400; round++) {
      const data = randomMessage(random, 1 + Math.floor(random() * 60));
      const { out, error } = run('normalize', randomChunks(random, data));
      expect(error).toBeUndefined();
      expect(out.toString('latin1'), JSON.stringify(data.toString('latin1'))).toBe(normalizeOracle(data).toString('latin1'));
    }
  });

  it('refuses an unknown mode', () => {
    expect(() => new LineEndingGuard({ mode: 'fix' as LineEndingMode })).toThrow(/mode must be "reject" or "normalize", got "fix"/);
  });
});

describe('LineEndingGuard on smtp-server DATA', () => {
  let server: SMTPServer | undefined;
  afterEach(() => server?.close());

  /** Sends raw SMTP lines and returns the server's replies once it closes. */
  async function converse(port: number, data: string): Promise<string> {
    const socket = net.connect(port, '127.0.0.1');
    let replies = '';
    socket.on('data', (chunk: Buffer) => (replies += chunk.toString()));
    await once(socket, 'connect');
    const waitFor = async (pattern: RegExp) => {
      const deadline = Date.now() + 5000;
      while (!pattern.test(replies)) {
        if (Date.now() > deadline) throw new Error(`no ${pattern} in ${JSON.stringify(replies)}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };
    await waitFor(/^220 /m);
    socket.write('EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n');
    await waitFor(/^354 /m);
    socket.write(data);
    await waitFor(/^(250|550) .*\r\n(?![\s\S]*354)/m);
    socket.end('QUIT\r\n');
    await once(socket, 'close');
    return replies;
  }

  it('refuses an SMTP smuggling payload with 550 and lets a clean message through', async () => {
    const delivered: string[] = [];
    server = new SMTPServer({
      logger: false,
      disabledCommands: ['STARTTLS', 'AUTH'],
      onData(stream, _session, callback) {
        const guard = new LineEndingGuard({ mode: 'reject' });
        const chunks: Buffer[] = [];
        const emit = (chunk: Buffer) => chunks.push(chunk);
        let failed: Error | undefined;
        // after a failure keep reading, so smtp-server sees the end of DATA and can reply
        const guarded = (step: () => void) => {
          if (failed) return;
          try {
            step();
          } catch (error) {
            failed = error as Error;
          }
        };
        stream.on('data', (chunk: Buffer) => guarded(() => guard.write(chunk, emit)));
        stream.on('end', () => {
          guarded(() => guard.end(emit));
          if (failed) return callback(failed);
          delivered.push(Buffer.concat(chunks).toString());
          callback();
        });
      },
    });
    server.listen(0, '127.0.0.1');
    await once(server.server, 'listening');
    const port = (server.server.address() as AddressInfo).port;

    const smuggled = await converse(port, 'Subject: one\r\n\r\nhello\n.\r\nMAIL FROM:<ceo@example.com>\r\n.\r\n');
    expect(smuggled).toMatch(/^550 Message data contains a bare LF at byte 21/m);
    expect(delivered).toEqual([]);

    const clean = await converse(port, 'Subject: two\r\n\r\nhello\r\n.\r\n');
    expect(clean).toMatch(/^250 /m);
    expect(delivered).toEqual(['Subject: two\r\n\r\nhello\r\n']);
  });
});
