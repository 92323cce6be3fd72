/**
 * A faster body for nodemailer's DataStream (the dot-stuffing step every message
 * passes on its way to the upstream). nodemailer's own version looks at every
 * byte in a JavaScript loop, which was a fifth of the gateway's CPU on 100 KiB
 * messages; this one finds the CR and LF bytes with Buffer#indexOf (memchr) and
 * produces byte-for-byte the same output, including nodemailer's repair of bare
 * CR and bare LF. gateway/test/dot-stuffing.test.ts checks the equivalence
 * against the original on random input split at random places.
 *
 * DataStream is not part of nodemailer's documented API, so the patch is applied
 * only when the class still keeps the state this code expects; otherwise the
 * original stays in place (slower, never wrong). A nodemailer release that
 * changes what DataStream outputs fails the equivalence test, which always
 * compares against the installed release's own transform.
 */
import type { Transform, TransformCallback } from 'node:stream';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const INSERT_LF = Buffer.from('\n');
const INSERT_LF_DOT = Buffer.from('\n.');
const INSERT_CR = Buffer.from('\r');
const INSERT_DOT = Buffer.from('.');

/** The state nodemailer's DataStream keeps between chunks. */
interface DataStreamState extends Transform {
  inByteCount: number;
  outByteCount: number;
  /** Last byte of the previous chunk; false before the first one (the start of a line). */
  lastByte: number | false;
}

type TransformFn = (this: DataStreamState, chunk: Buffer | string, encoding: BufferEncoding, done: TransformCallback) => void;

/** What nodemailer's per-byte loop does, with the scanning done by indexOf. */
export function fastDotStuffingTransform(this: DataStreamState, input: Buffer | string, _encoding: BufferEncoding, done: TransformCallback): void {
  if (!input || !input.length) return done();
  const chunk = typeof input === 'string' ? Buffer.from(input) : input;
  this.inByteCount += chunk.length;
  const len = chunk.length;
  const parts: Buffer[] = [];
  let outLength = 0;
  let copiedUpTo = 0;
  const insert = (at: number, bytes: Buffer) => {
    if (at > copiedUpTo) {
      parts.push(chunk.subarray(copiedUpTo, at));
      outLength += at - copiedUpTo;
    }
    parts.push(bytes);
    outLength += bytes.length;
    copiedUpTo = at;
  };

  // the first byte's predecessor is the previous chunk's last byte
  const first = chunk[0];
  const before = this.lastByte;
  if (before === CR && first !== LF) insert(0, first === DOT ? INSERT_LF_DOT : INSERT_LF);
  else if (first === DOT && (before === LF || before === false)) insert(0, INSERT_DOT);

  // every other insertion sits at or right after a CR or an LF: visit them in order
  let cr = chunk.indexOf(CR);
  let lf = chunk.indexOf(LF);
  while (cr !== -1 || lf !== -1) {
    if (lf === -1 || (cr !== -1 && cr < lf)) {
      // a CR not followed by LF (within this chunk) is bare: LF goes in after it
      const next = cr + 1;
      if (next < len && chunk[next] !== LF) insert(next, chunk[next] === DOT ? INSERT_LF_DOT : INSERT_LF);
      cr = chunk.indexOf(CR, next);
    } else {
      const previous = lf > 0 ? chunk[lf - 1] : before;
      if (previous !== CR) insert(lf, INSERT_CR);
      const next = lf + 1;
      if (next < len && chunk[next] === DOT) insert(next, INSERT_DOT);
      lf = chunk.indexOf(LF, next);
    }
  }

  if (parts.length) {
    if (copiedUpTo < len) {
      parts.push(chunk.subarray(copiedUpTo));
      outLength += len - copiedUpTo;
    }
    this.outByteCount += outLength;
    this.push(Buffer.concat(parts, outLength));
  } else {
    this.outByteCount += len;
    this.push(chunk);
  }
  this.lastByte = chunk[len - 1];
  done();
}

type DataStreamClass = new () => DataStreamState;

/** nodemailer's DataStream class (the module its SMTP connection loads), if it is still there. */
export function loadDataStream(): DataStreamClass | undefined {
  try {
    return require('nodemailer/lib/smtp-connection/data-stream') as DataStreamClass;
  } catch {
    return undefined;
  }
}

let original: TransformFn | undefined;

/** The DataStream transform nodemailer shipped (for the equivalence test). */
export function originalDotStuffingTransform(): TransformFn | undefined {
  return original ?? (loadDataStream()?.prototype as { _transform?: TransformFn } | undefined)?._transform;
}

/** Installs the fast transform; returns false (and changes nothing) if DataStream is not as expected. */
export function installFastDotStuffing(DataStream: DataStreamClass | undefined = loadDataStream()): boolean {
  if (!DataStream) return false;
  const proto = DataStream.prototype as { _transform?: TransformFn };
  if (proto._transform === fastDotStuffingTransform) return true;
  const probe = new DataStream();
  const looksRight =
    typeof proto._transform === 'function' && probe.inByteCount === 0 && probe.outByteCount === 0 && probe.lastByte === false;
  probe.destroy();
  if (!looksRight) return false;
  original = proto._transform;
  proto._transform = fastDotStuffingTransform;
  return true;
}
