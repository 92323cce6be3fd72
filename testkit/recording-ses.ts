/**
 * An HTTP endpoint that speaks the SES v2 SendEmail operation well enough for
 * the AWS SDK: it records every request (sender, Destination, configuration
 * set, the decoded raw bytes) and answers what the test tells it to: a
 * MessageId, an SES error response (HTTP status, x-amzn-ErrorType, JSON
 * message, as SES sends them), a stall, or a connection reset.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface RecordedSendEmail {
  readonly from?: string;
  readonly to: string[];
  readonly cc: string[];
  readonly bcc: string[];
  readonly configurationSet?: string;
  readonly tags?: Array<{ Name: string; Value: string }>;
  readonly raw: Buffer;
}

export type SesAnswer =
  | { readonly kind: 'accept' }
  | { readonly kind: 'error'; readonly status: number; readonly type: string; readonly message: string }
  | { readonly kind: 'stall' }
  | { readonly kind: 'reset' };

export interface RecordingSes {
  readonly endpoint: string;
  readonly requests: RecordedSendEmail[];
  /** What the next requests get. @default accept */
  answer: SesAnswer;
  close(): Promise<void>;
}

interface SendEmailBody {
  FromEmailAddress?: string;
  Destination?: { ToAddresses?: string[]; CcAddresses?: string[]; BccAddresses?: string[] };
  ConfigurationSetName?: string;
  EmailTags?: Array<{ Name: string; Value: string }>;
  Content?: { Raw?: { Data?: string } };
}

export async function startRecordingSes(): Promise<RecordingSes> {
  const sockets = new Set<Socket>();
  let sequence = 0;
  const state: RecordingSes = {
    endpoint: '',
    requests: [],
    answer: { kind: 'accept' },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  const server = createServer((req, res) => void handle(req, res));
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (req.method !== 'POST' || req.url !== '/v2/email/outbound-emails') {
      res.writeHead(404, { 'content-type': 'application/json', 'x-amzn-errortype': 'UnknownOperationException' }).end('{}');
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as SendEmailBody;
    state.requests.push({
      from: body.FromEmailAddress,
      to: body.Destination?.ToAddresses ?? [],
      cc: body.Destination?.CcAddresses ?? [],
      bcc: body.Destination?.BccAddresses ?? [],
      configurationSet: body.ConfigurationSetName,
      tags: body.EmailTags,
      raw: Buffer.from(body.Content?.Raw?.Data ?? '', 'base64'),
    });
    const answer = state.answer;
    if (answer.kind === 'stall') return; // never answers; the client's timeout ends it
    if (answer.kind === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    if (answer.kind === 'error') {
      res
        .writeHead(answer.status, {
          'content-type': 'application/json',
          'x-amzn-requestid': `req-${++sequence}`,
          'x-amzn-errortype': `${answer.type}:http://internal.amazon.com/coral/com.amazonaws.sesv2/`,
        })
        .end(JSON.stringify({ message: answer.message }));
      return;
    }
    res
      .writeHead(200, { 'content-type': 'application/json', 'x-amzn-requestid': `req-${++sequence}` })
      .end(JSON.stringify({ MessageId: `0100019a-rec-${String(++sequence).padStart(6, '0')}-000000` }));
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(state, { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}
