/**
 * A small authoritative DNS server on loopback UDP for one test: it answers A
 * queries for the names it holds (changeable while running, TTL 0), NODATA for
 * other types of those names, and NXDOMAIN for anything else. Enough for the
 * gateway's own resolver to count a headless Service's records.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';

export interface TestDnsServer {
  /** "127.0.0.1:port", for a resolver's setServers. */
  readonly server: string;
  /** Sets the A records of `name` (no trailing dot); an empty list removes the name (NXDOMAIN). */
  setRecords(name: string, addresses: readonly string[]): void;
  /** Queries answered so far. */
  readonly queries: number;
  close(): Promise<void>;
}

const TYPE_A = 1;

export async function startTestDnsServer(): Promise<TestDnsServer> {
  const records = new Map<string, readonly string[]>();
  let queries = 0;
  const socket: Socket = createSocket('udp4');
  socket.on('message', (query, peer) => {
    if (query.length < 12) return;
    queries += 1;
    let offset = 12;
    const labels: string[] = [];
    while (offset < query.length && query[offset] !== 0) {
      const length = query[offset];
      labels.push(query.subarray(offset + 1, offset + 1 + length).toString('ascii'));
      offset += 1 + length;
    }
    const questionEnd = offset + 5;
    const type = query.readUInt16BE(offset + 1);
    const name = labels.join('.').toLowerCase();
    const known = records.get(name);
    const answers = known && type === TYPE_A ? known : [];
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2); // id
    header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | (known ? 0 : 3), 2); // response, authoritative, RD copied, NOERROR/NXDOMAIN
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    const answerRecords = answers.map((address) => {
      const record = Buffer.alloc(16);
      record.writeUInt16BE(0xc00c, 0); // pointer to the question's name
      record.writeUInt16BE(TYPE_A, 2);
      record.writeUInt16BE(1, 4); // IN
      record.writeUInt32BE(0, 6); // TTL
      record.writeUInt16BE(4, 10);
      address.split('.').forEach((part, i) => record.writeUInt8(Number(part), 12 + i));
      return record;
    });
    socket.send(Buffer.concat([header, query.subarray(12, questionEnd), ...answerRecords]), peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const { port } = socket.address() as AddressInfo;
  return {
    server: `127.0.0.1:${port}`,
    setRecords(name, addresses) {
      if (addresses.length) records.set(name.toLowerCase(), [...addresses]);
      else records.delete(name.toLowerCase());
    },
    get queries() {
      return queries;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
