/**
 * The gateway's dot-stuffing must produce exactly what nodemailer's own
 * DataStream produces, for any bytes split at any places.
 */
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';
import { describe, expect, it } from 'vitest';
import { dotStuffingFlush, dotStuffingTransform } from '../src/relay/dot-stuffing';
import { openDialog, startData } from './helpers/smtp-dialog';
import { startTestGateway } from './helpers/test-gateway';
import { startTestUpstream } from './helpers/test-upstream';

interface Stuffing {
  readonly transform: typeof dotStuffingTransform;
  readonly flush: typeof dotStuffingFlush;
}

// taken before anything in this file starts a gateway, which installs the gateway's own
const prototype = DataStream.prototype as unknown as Stuffing & { _transform: Stuffing['transform']; _flush: Stuffing['flush'] };
const original: Stuffing = { transform: prototype._transform, flush: prototype._flush };
const fast: Stuffing = { transform: dotStuffingTransform, flush: dotStuffingFlush };

/** Runs `chunks` through a DataStream with `stuffing`'s methods; returns the output and byte counts. */
function run(stuffing: Stuffing, chunks: Buffer[]) {
  const stream = new DataStream() as DataStream & { inByteCount: number; outByteCount: number };
  const out: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => out.push(chunk));
  for (const chunk of chunks) stuffing.transform.call(stream as never, chunk, 'latin1', () => undefined);
  stuffing.flush.call(stream as never, () => undefined);
  return { out: Buffer.concat(out).toString('latin1'), inBytes: stream.inByteCount, outBytes: stream.outByteCount };
}

/** Random text made mostly of the bytes that matter: CR, LF, dots and a little else. */
function randomBytes(length: number, random: () => number): Buffer {
  const alphabet = [0x0d, 0x0a, 0x2e, 0x41, 0x20, 0x0d, 0x0a, 0x2e];
  return Buffer.from(Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]));
}

function split(data: Buffer, random: () => number): Buffer[] {
  const chunks: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    const size = 1 + Math.floor(random() * 12);
    chunks.push(data.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

/** A small deterministic PRNG so failures can be replayed. */
function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('fast dot-stuffing', () => {
  it("is compared with nodemailer's own methods, not with itself", () => {
    expect(original.transform).not.toBe(fast.transform);
    expect(original.flush).not.toBe(fast.flush);
  });

  it('is byte-for-byte nodemailer on hand-picked cases', () => {
    const cases = ['', '.', '..\r\n', 'a\r\n.b\r\n', 'a\n.b\n', 'a\r.b', 'a\rb\r', '\r\r\n\n', '.\r\n.\r\n', 'x\r', 'x\n', 'line\r\n\r\n.', 'a\r\n'];
    for (const text of cases) {
      const data = Buffer.from(text, 'latin1');
      expect(run(fast, [data]), JSON.stringify(text)).toEqual(run(original, [data]));
      const bytes = [...data].map((b) => Buffer.from([b]));
      expect(run(fast, bytes), `${JSON.stringify(text)} byte by byte`).toEqual(run(original, bytes));
    }
  });

  it('is byte-for-byte nodemailer on 3000 random inputs split at random places', () => {
    const random = mulberry32(20261127);
    for (let n = 0; n < 3000; n++) {
      const data = randomBytes(1 + Math.floor(random() * 60), random);
      const chunks = split(data, random);
      expect(run(fast, chunks), JSON.stringify(data.toString('latin1'))).toEqual(run(original, chunks));
    }
  });

  it('relays lines that start with dots whole, through the gateway to a real upstream', async () => {
    const upstream = await startTestUpstream();
    const gw = await startTestGateway({ upstreamPort: upstream.port });
    try {
      const dialog = await openDialog(gw.relayPort);
      await startData(dialog, 'app@example.com', ['user@example.org']);
      const body = '.starts with a dot\r\n..two dots\r\n.\r\nend\r\n';
      // stuffed by the client as SMTP requires: each leading dot doubled
      dialog.write(`Subject: dots\r\n\r\n${body.replace(/^\./gm, '..')}.\r\n`);
      expect((await dialog.reply()).code).toBe(250);
      dialog.destroy();
      expect(upstream.messages).toHaveLength(1);
      expect(upstream.messages[0].raw.toString('latin1').endsWith(`\r\n\r\n${body}`)).toBe(true);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
