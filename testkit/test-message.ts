/**
 * Test messages of an exact size that carry their id in a header and in the
 * subject, so the checker can find every one in what the upstream received.
 */

/** Header that carries the id; the recording upstreams look for it. */
export const ID_HEADER = 'X-Bench-Id';

const LINE = `${'0123456789abcdefghijklmnopqrstuvwxyz'.repeat(2)}ABCD\r\n`; // 78 bytes with CRLF

/** A body of exactly `bytes` bytes (at least 2) of CRLF-terminated lines, none starting with '.'. */
export function makeBody(bytes: number): Buffer {
  const size = Math.max(2, bytes);
  const full = Math.floor((size - 2) / LINE.length);
  const rest = size - full * LINE.length;
  return Buffer.from(LINE.repeat(full) + 'x'.repeat(rest - 2) + '\r\n', 'latin1');
}

export interface MessageParts {
  /** Headers and the blank line, dot-stuffing not needed. */
  readonly head: Buffer;
  readonly body: Buffer;
}

/** Builds the head for one message; `body` is shared between messages of one size. */
export function makeHead(id: string, from: string, to: string): Buffer {
  return Buffer.from(
    `From: <${from}>\r\n` +
      `To: <${to}>\r\n` +
      `Subject: bench ${id}\r\n` +
      `Message-ID: <${id}@bench.test>\r\n` +
      `Date: ${new Date().toUTCString()}\r\n` +
      `${ID_HEADER}: ${id}\r\n` +
      'MIME-Version: 1.0\r\n' +
      'Content-Type: text/plain; charset=us-ascii\r\n' +
      '\r\n',
    'latin1',
  );
}

/** A body such that head + body is `totalBytes` (the message size S). */
export function bodyForTotal(totalBytes: number): Buffer {
  const headSize = makeHead('x'.repeat(24), 'bench@bench.test', 'sink@sink.test').length;
  return makeBody(totalBytes - headSize);
}

const ID_LINE = new RegExp(`^${ID_HEADER}:[ \\t]*(\\S+)`, 'im');

/** The id in a received message's header section, if any. */
export function findId(message: string): string | undefined {
  const headerEnd = message.search(/\r?\n\r?\n/);
  const head = headerEnd >= 0 ? message.slice(0, headerEnd) : message;
  return ID_LINE.exec(head)?.[1];
}
