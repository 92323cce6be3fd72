import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import nodemailer from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import {
  onUntrustedProxyHeader,
  parseProxyHeader,
  ProxyProtocolError,
  readProxyHeader,
  startsLikeProxyHeader,
  V1_MAX_BYTES,
  type ProxyHeader,
} from '../src/smtp/proxy-protocol';
import { makeTestCertificates } from '../../testkit/certs';
import { eventually } from '../../testkit/eventually';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header built field by field from the spec (independent of the parser under test). */
function v2(opts: { command?: number; family?: number; transport?: number; addresses?: Buffer; tlvs?: Buffer; version?: number }): Buffer {
  const body = Buffer.concat([opts.addresses ?? Buffer.alloc(0), opts.tlvs ?? Buffer.alloc(0)]);
  const head = Buffer.alloc(4);
  head[0] = ((opts.version ?? 2) << 4) | (opts.command ?? 1);
  head[1] = ((opts.family ?? 1) << 4) | (opts.transport ?? 1);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIGNATURE, head, body]);
}

function ipv4Addresses(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}

function ipv6Addresses(src: string, dst: string, sport: number, dport: number): Buffer {
  const b = Buffer.alloc(36);
  Buffer.from(src, 'hex').copy(b, 0);
  Buffer.from(dst, 'hex').copy(b, 16);
  b.writeUInt16BE(sport, 32);
  b.writeUInt16BE(dport, 34);
  return b;
}

/** What AWS NLB appends: PP2_TYPE_AWS (0xEA), subtype 0x01 VPC endpoint id. */
const AWS_TLV = (() => {
  const value = Buffer.concat([Buffer.from([0x01]), Buffer.from('vpce-08d2bf15fac5001c9')]);
  const tlv = Buffer.alloc(3);
  tlv[0] = 0xea;
  tlv.writeUInt16BE(value.length, 1);
  return Buffer.concat([tlv, value]);
})();

function expectParseError(input: Buffer | string, message: RegExp): void {
  const buf = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  expect(() => parseProxyHeader(buf)).toThrow(ProxyProtocolError);
  expect(() => parseProxyHeader(buf)).toThrow(message);
}

describe('parseProxyHeader v1', () => {
  it('parses TCP4 and reports the bytes consumed, leaving what follows', () => {
    const buf = Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.5 56324 25\r\nEHLO client\r\n');
    const result = parseProxyHeader(buf);
    expect(result).toEqual({
      status: 'done',
      consumed: 42,
      header: { sourceAddress: '203.0.113.7', sourcePort: 56324, destinationAddress: '10.0.0.5', destinationPort: 25, version: 1 },
    });
    expect(buf.subarray(42).toString()).toBe('EHLO client\r\n');
  });

  it('parses TCP6', () => {
    const result = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 65535 587\r\n'));
    expect(result).toMatchObject({ status: 'done', header: { sourceAddress: '2001:db8::1', destinationAddress: '2001:db8::2', sourcePort: 65535, destinationPort: 587, version: 1 } });
  });

  it('returns a null header for UNKNOWN', () => {
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).toEqual({ status: 'done', header: null, consumed: 15 });
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX'))).toMatchObject({ status: 'done', header: null, consumed: 35 });
  });

  it('is incomplete at every prefix of a valid header', () => {
    const full = Buffer.from('PROXY TCP4 192.0.2.1 192.0.2.2 1000 2525\r\n');
    for (let n = 0; n < full.length; n++) expect(parseProxyHeader(full.subarray(0, n))).toEqual({ status: 'incomplete' });
    expect(parseProxyHeader(full).status).toBe('done');
  });

  it('accepts a header of exactly 107 bytes and refuses a longer line', () => {
    const longest = 'PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n';
    expect(longest.length).toBe(V1_MAX_BYTES);
    expect(parseProxyHeader(Buffer.from(longest))).toEqual({ status: 'done', header: null, consumed: 107 });
    const tcp6 = 'PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n';
    expect(parseProxyHeader(Buffer.from(tcp6))).toMatchObject({ status: 'done', consumed: tcp6.length, header: { sourcePort: 65535 } });
    expectParseError(`PROXY UNKNOWN ${'x'.repeat(120)}`, /no CRLF within 107 bytes/);
    expectParseError(`PROXY UNKNOWN ${'x'.repeat(95)}\r\n`, /no CRLF within 107 bytes/);
  });

  it.each([
    ['PROXY TCP4 203.0.113.7 10.0.0.5 56324 25\n', /bare LF/],
    ['PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n', /"TCP5" is not TCP4, TCP6 or UNKNOWN/],
    ['PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n', /needs 6 space-separated fields, has 5/],
    ['PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n', /needs 6/],
    ['PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n', /source address "2001:db8::1" is not an IPv4 address/],
    ['PROXY TCP6 2001:db8::1 1.2.3.4 1 2\r\n', /destination address "1.2.3.4" is not an IPv6 address/],
    ['PROXY TCP4 1.2.3.400 1.2.3.4 1 2\r\n', /source address "1.2.3.400"/],
    ['PROXY TCP4 evil.example 1.2.3.4 1 2\r\n', /source address "evil.example"/],
    ['PROXY TCP4 1.2.3.4 1.2.3.4 65536 25\r\n', /source port "65536" is not a number from 0 to 65535/],
    ['PROXY TCP4 1.2.3.4 1.2.3.4 25 -1\r\n', /destination port "-1"/],
    ['PROXY TCP4 1.2.3.4 1.2.3.4 025 25\r\n', /source port "025"/],
    ['EHLO client.example\r\n', /Expected a PROXY protocol header, got "EHLO client.exam"/],
    ['proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n', /Expected a PROXY protocol header/],
  ])('refuses %j', (input, message) => expectParseError(input, message));
});

describe('parseProxyHeader v2', () => {
  it('parses a literal IPv4 header as the spec lays it out', () => {
    const literal = Buffer.from('0d0a0d0a000d0a515549540a' + '21' + '11' + '000c' + 'c0a80001' + '0a000001' + 'd431' + '0019' + '45484c4f', 'hex');
    expect(parseProxyHeader(literal)).toEqual({
      status: 'done',
      consumed: 28,
      header: { sourceAddress: '192.168.0.1', destinationAddress: '10.0.0.1', sourcePort: 54321, destinationPort: 25, version: 2 },
    });
  });

  it('skips TLVs such as the AWS VPC endpoint id', () => {
    const header = v2({ addresses: ipv4Addresses([198, 51, 100, 9], [10, 1, 2, 3], 40000, 2525), tlvs: AWS_TLV });
    const result = parseProxyHeader(Buffer.concat([header, Buffer.from('EHLO')]));
    expect(result).toMatchObject({ status: 'done', consumed: header.length, header: { sourceAddress: '198.51.100.9', sourcePort: 40000, destinationPort: 2525 } });
  });

  it('parses IPv6 in RFC 5952 form and IPv4-mapped addresses in dotted form', () => {
    const result = parseProxyHeader(
      v2({ family: 2, addresses: ipv6Addresses('20010db8000000000000000000000001', '00000000000000000000ffff0a000005', 1, 25) }),
    );
    expect(result).toMatchObject({ status: 'done', header: { sourceAddress: '2001:db8::1', destinationAddress: '::ffff:10.0.0.5', version: 2 } });
    const other = parseProxyHeader(v2({ family: 2, addresses: ipv6Addresses('fd000001000000010000000000000000', '00000000000000000000000000000001', 1, 2) }));
    expect(other).toMatchObject({ header: { sourceAddress: 'fd00:1:0:1::', destinationAddress: '::1' } });
    const noRun = parseProxyHeader(v2({ family: 2, addresses: ipv6Addresses('fe800000000000010002000300040005', '20010db8000100010001000100010001', 1, 2) }));
    expect(noRun).toMatchObject({ header: { sourceAddress: 'fe80::1:2:3:4:5', destinationAddress: '2001:db8:1:1:1:1:1:1' } });
    const header = (noRun as { header: ProxyHeader }).header;
    expect(net.isIPv6(header.sourceAddress) && net.isIPv6(header.destinationAddress)).toBe(true);
  });

  it('returns a null header for LOCAL (NLB health checks), UNSPEC and UNIX', () => {
    const local = v2({ command: 0, family: 0, transport: 0 });
    expect(parseProxyHeader(local)).toEqual({ status: 'done', header: null, consumed: 16 });
    const localWithTlv = v2({ command: 0, family: 1, addresses: ipv4Addresses([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), tlvs: AWS_TLV });
    expect(parseProxyHeader(localWithTlv)).toEqual({ status: 'done', header: null, consumed: localWithTlv.length });
    expect(parseProxyHeader(v2({ family: 0, transport: 0 }))).toMatchObject({ status: 'done', header: null });
    expect(parseProxyHeader(v2({ family: 3, addresses: Buffer.alloc(216) }))).toMatchObject({ status: 'done', header: null, consumed: 232 });
  });

  it('is incomplete at every prefix', () => {
    const full = v2({ addresses: ipv4Addresses([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), tlvs: AWS_TLV });
    for (let n = 0; n < full.length; n++) expect(parseProxyHeader(full.subarray(0, n))).toEqual({ status: 'incomplete' });
  });

  it('refuses malformed headers with a clear message', () => {
    expectParseError(v2({ version: 1 }), /version 1, expected 2/);
    expectParseError(v2({ command: 2 }), /command 0x2, expected LOCAL/);
    expectParseError(v2({ transport: 2, addresses: ipv4Addresses([1, 2, 3, 4], [5, 6, 7, 8], 1, 2) }), /transport 0x2; only TCP/);
    expectParseError(v2({ family: 1, addresses: Buffer.alloc(8) }), /too short for IPv4 addresses: length 8, need 12/);
    expectParseError(v2({ family: 2, addresses: Buffer.alloc(12) }), /too short for IPv6 addresses: length 12, need 36/);
    expectParseError(v2({ family: 4, addresses: Buffer.alloc(12) }), /unknown address family 0x4/);
    expectParseError(Buffer.concat([SIGNATURE.subarray(0, 11), Buffer.from('X')]), /Expected a PROXY protocol header, got bytes 0d0a0d0a000d0a5155495458/);
  });

  it('refuses a header longer than maxBytes before it has all arrived', () => {
    const preamble = v2({ addresses: Buffer.alloc(4000) }).subarray(0, 16);
    expect(() => parseProxyHeader(preamble, { maxBytes: 1024 })).toThrow(/4016 bytes exceeds the limit of 1024 bytes/);
    expect(() => parseProxyHeader(preamble, { maxBytes: 1024 })).toThrow(expect.objectContaining({ reason: 'too_large' }));
    expect(parseProxyHeader(preamble)).toEqual({ status: 'incomplete' });
  });
});

describe('startsLikeProxyHeader', () => {
  it('recognises both versions, also from a partial first chunk', () => {
    expect(startsLikeProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n'))).toBe(true);
    expect(startsLikeProxyHeader(Buffer.from('PROXY'))).toBe(true);
    expect(startsLikeProxyHeader(v2({}))).toBe(true);
    expect(startsLikeProxyHeader(SIGNATURE.subarray(0, 6))).toBe(true);
  });

  it('does not mistake SMTP for a PROXY header', () => {
    for (const text of ['EHLO client\r\n', 'HELO x\r\n', 'QUIT\r\n', '\r\n', 'PRO', 'PROXYZ', '']) {
      expect(startsLikeProxyHeader(Buffer.from(text)), text).toBe(false);
    }
  });
});

describe('readProxyHeader on real sockets', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    while (cleanups.length) cleanups.pop()!();
  });

  /** A loopback server whose connections are handed to `onSocket`; returns its port. */
  async function listen(onSocket: (socket: net.Socket) => void): Promise<number> {
    const server = net.createServer(onSocket);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => server.close());
    return (server.address() as AddressInfo).port;
  }

  function connect(port: number): net.Socket {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    cleanups.push(() => socket.destroy());
    return socket;
  }

  /** Reads a header, then everything after it until the peer ends. */
  async function serve(timeoutMs = 2000): Promise<{ port: number; result: Promise<{ header: ProxyHeader | null; rest: string }> }> {
    let resolveResult!: (value: { header: ProxyHeader | null; rest: string }) => void;
    let rejectResult!: (error: Error) => void;
    const result = new Promise<{ header: ProxyHeader | null; rest: string }>((resolve, reject) => {
      resolveResult = resolve;
      rejectResult = reject;
    });
    const port = await listen((socket) => {
      readProxyHeader(socket, { timeoutMs }).then(async (header) => {
        const chunks: Buffer[] = [];
        for await (const chunk of socket) chunks.push(chunk as Buffer);
        resolveResult({ header, rest: Buffer.concat(chunks).toString() });
      }, (error: Error) => {
        socket.destroy();
        rejectResult(error);
      });
    });
    return { port, result };
  }

  it('reads a v2 header sent together with SMTP data and leaves the data intact', async () => {
    const { port, result } = await serve();
    const client = connect(port);
    client.end(Buffer.concat([v2({ addresses: ipv4Addresses([203, 0, 113, 50], [10, 0, 0, 1], 61000, 25), tlvs: AWS_TLV }), Buffer.from('EHLO client\r\nQUIT\r\n')]));
    await expect(result).resolves.toEqual({
      header: { sourceAddress: '203.0.113.50', sourcePort: 61000, destinationAddress: '10.0.0.1', destinationPort: 25, version: 2 },
      rest: 'EHLO client\r\nQUIT\r\n',
    });
  });

  it('reads a v1 header that arrives one byte at a time', async () => {
    const { port, result } = await serve();
    const client = connect(port);
    client.setNoDelay(true);
    const bytes = Buffer.from('PROXY TCP4 198.51.100.1 10.0.0.1 12345 25\r\nHELO x\r\n');
    for (const byte of bytes) {
      client.write(Buffer.from([byte]));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    client.end();
    await expect(result).resolves.toEqual({
      header: { sourceAddress: '198.51.100.1', sourcePort: 12345, destinationAddress: '10.0.0.1', destinationPort: 25, version: 1 },
      rest: 'HELO x\r\n',
    });
  });

  it('resolves null for a v2 LOCAL health check', async () => {
    const { port, result } = await serve();
    connect(port).end(v2({ command: 0, family: 0, transport: 0 }));
    await expect(result).resolves.toEqual({ header: null, rest: '' });
  });

  it('rejects garbage, a silent peer and a peer that closes mid-header', async () => {
    const garbage = await serve();
    connect(garbage.port).write('EHLO no-proxy\r\n');
    await expect(garbage.result).rejects.toThrow(/Expected a PROXY protocol header, got "EHLO no-proxy\\r\\n"/);
    await expect(garbage.result).rejects.toMatchObject({ reason: 'invalid' });

    const silent = await serve(150);
    connect(silent.port).write('PROXY TCP4 1.2.3.4');
    await expect(silent.result).rejects.toThrow(/No complete PROXY header within 150 ms \(18 bytes received\)/);
    await expect(silent.result).rejects.toMatchObject({ reason: 'timeout' });

    const closing = await serve();
    connect(closing.port).end(v2({ addresses: ipv4Addresses([1, 2, 3, 4], [5, 6, 7, 8], 1, 2) }).subarray(0, 20));
    await expect(closing.result).rejects.toThrow(/Connection closed after 20 bytes, before a complete PROXY header/);
    await expect(closing.result).rejects.toMatchObject({ reason: 'closed' });
  });

  it('hands smtp-server a session with the client address from a v2 header', async () => {
    const sessions: SMTPServerSession[] = [];
    const received: string[] = [];
    const smtp = new SMTPServer({
      logger: false,
      disabledCommands: ['STARTTLS', 'AUTH'],
      onConnect(session, callback) {
        sessions.push(session);
        callback();
      },
      onData(stream, _session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          received.push(Buffer.concat(chunks).toString());
          callback();
        });
      },
    });
    cleanups.push(() => smtp.close());
    const port = await listen((socket) => {
      readProxyHeader(socket, { timeoutMs: 2000 }).then(
        (header) => smtp.connect(socket, header ? { remoteAddress: header.sourceAddress, remotePort: header.sourcePort } : {}),
        () => socket.destroy(),
      );
    });
    const options: SMTPTransport.Options = {
      host: '127.0.0.1',
      port,
      secure: false,
      ignoreTLS: true,
      getSocket(_options, callback) {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.write(v2({ family: 2, addresses: ipv6Addresses('20010db8000000000000000000000abc', '20010db8000000000000000000000001', 50505, 25) }));
          callback(null, { connection: socket });
        });
        socket.once('error', (error) => callback(error, undefined));
      },
    };
    const transport = nodemailer.createTransport(options);
    const info = await transport.sendMail({ from: 'app@example.com', to: 'user@example.net', subject: 'proxied', text: 'hello' });
    transport.close();
    expect(info.accepted).toEqual(['user@example.net']);
    expect(sessions).toHaveLength(1);
    expect(sessions[0].remoteAddress).toBe('2001:db8::abc');
    expect(sessions[0].remotePort).toBe(50505);
    expect(received[0]).toContain('Subject: proxied');
  });

  it('leaves a TLS ClientHello that arrived with the header for an implicit TLS handshake', async () => {
    const certs = await makeTestCertificates();
    const secureContext = tls.createSecureContext({ key: certs.key, cert: certs.cert });
    const port = await listen((socket) => {
      // wait so the header and the ClientHello are both buffered and arrive as one read
      setTimeout(() => {
        readProxyHeader(socket, { timeoutMs: 2000 }).then((header) => {
          const secure = new tls.TLSSocket(socket, { isServer: true, secureContext });
          secure.on('error', () => undefined);
          secure.on('secure', () => secure.end(`220 hello ${header?.sourceAddress}\r\n`));
        }, () => socket.destroy());
      }, 100);
    });
    const raw = connect(port);
    await once(raw, 'connect');
    raw.write('PROXY TCP4 192.0.2.77 10.0.0.1 4444 465\r\n');
    const secure = tls.connect({ socket: raw, ca: certs.ca, servername: 'localhost' });
    cleanups.push(() => secure.destroy());
    const chunks: Buffer[] = [];
    for await (const chunk of secure) chunks.push(chunk as Buffer);
    expect(secure.authorized).toBe(true);
    expect(Buffer.concat(chunks).toString()).toBe('220 hello 192.0.2.77\r\n');
  });

  it('lets a listener refuse a PROXY header from an untrusted peer before smtp-server acts on it', async () => {
    const mailFrom: string[] = [];
    const smtp = new SMTPServer({
      logger: false,
      disabledCommands: ['STARTTLS', 'AUTH'],
      onMailFrom(address, _session, callback) {
        mailFrom.push(address.address);
        callback();
      },
    });
    smtp.on('error', () => undefined);
    cleanups.push(() => smtp.close());
    const refused: string[] = [];
    const port = await listen((socket) => {
      smtp.connect(socket, {});
      onUntrustedProxyHeader(socket, (chunk) => {
        refused.push(chunk.subarray(0, 10).toString('latin1'));
        socket.end('421 4.7.0 PROXY header not accepted from this address\r\n');
      });
    });

    /** Sends `payload` after the greeting; resolves with all replies once the server closes. */
    const talk = async (payload: Buffer | string) => {
      const client = connect(port);
      let replies = '';
      client.on('data', (chunk: Buffer) => (replies += chunk.toString('latin1')));
      await eventually(() => /^220 /m.test(replies), 'the greeting');
      client.write(payload);
      if (typeof payload === 'string') client.end();
      await once(client, 'close');
      return replies;
    };
    const v1Replies = await talk(Buffer.from('PROXY TCP4 10.9.9.9 10.0.0.1 1 25\r\nEHLO x\r\nMAIL FROM:<spoof@example.com>\r\n'));
    expect(v1Replies).toMatch(/^421 4\.7\.0 PROXY header not accepted/m);
    expect(v1Replies).not.toMatch(/^250/m);
    const v2Replies = await talk(Buffer.concat([v2({ addresses: ipv4Addresses([10, 9, 9, 9], [10, 0, 0, 1], 1, 25) }), Buffer.from('EHLO x\r\nMAIL FROM:<spoof2@example.com>\r\n')]));
    expect(v2Replies).toMatch(/^421 4\.7\.0/m);
    expect(refused).toEqual(['PROXY TCP4', SIGNATURE.subarray(0, 10).toString('latin1')]);
    expect(mailFrom).toEqual([]);

    // plain SMTP is untouched, and only the first chunk is inspected
    const plain = await talk('EHLO x\r\nMAIL FROM:<app@example.com>\r\nQUIT\r\n');
    expect(plain).toMatch(/^221 /m);
    expect(mailFrom).toEqual(['app@example.com']);
    expect(refused).toHaveLength(2);
  });
});
