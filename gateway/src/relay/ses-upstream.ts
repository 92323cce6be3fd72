/**
 * The `ses` transport: each message goes to the SES v2 API as one SendEmail
 * request with raw content, signed with the AWS SDK's default credentials
 * (EKS Pod Identity in the clusters, the usual environment or profile
 * elsewhere). SES errors become SMTP-shaped failures here (ses-errors.ts), so
 * the client's reply is decided by reply-mapping.ts as for an SMTP upstream.
 *
 * The SDK never retries (maxAttempts 1): once a request may have reached SES,
 * sending it again could deliver the message twice, so a failure goes back to
 * the client as 451 and the client's retry is the only retry.
 */
import type { Readable } from 'node:stream';
import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2';
import { SES_LIMITS } from '../config/schema';
import { sesFailure, smtpFailure } from './ses-errors';
import type { UpstreamInfo } from './reply-mapping';
import type { Envelope, Upstream, UpstreamSettings } from './upstream';

export interface SesUpstreamHooks {
  /** SES refused the pod's AWS credentials (or there were none). */
  readonly onCredentialFailure?: (error: Error) => void;
}

export function createSesUpstream(settings: UpstreamSettings, hooks: SesUpstreamHooks = {}): Upstream {
  const { region, endpoint, configurationSet, requestTimeoutMs } = settings.ses;
  const client = new SESv2Client({
    region,
    endpoint: endpoint || undefined,
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: settings.connectionTimeoutMs,
      requestTimeout: requestTimeoutMs,
      throwOnRequestTimeout: true,
      httpsAgent: { keepAlive: true, maxSockets: settings.maxConnections },
      httpAgent: { keepAlive: true, maxSockets: settings.maxConnections },
    },
  });
  return {
    transport: undefined,
    async send(envelope, raw, signal) {
      checkRecipients(envelope);
      const data = await readWhole(raw, signal);
      try {
        const output = await client.send(
          new SendEmailCommand({
            // a null sender (a bounce, MAIL FROM:<>) has no address to give: SES then uses the header From
            FromEmailAddress: envelope.from || undefined,
            // always the envelope: without Destination SES reads the headers, and Bcc recipients would be lost
            Destination: { ToAddresses: [...envelope.to] },
            Content: { Raw: { Data: data } },
            ConfigurationSetName: configurationSet || undefined,
          }),
          { abortSignal: signal },
        );
        return { response: `250 Ok ${output.MessageId ?? 'unknown'}` } satisfies UpstreamInfo;
      } catch (error) {
        const failure = sesFailure(error);
        if (failure.code === 'EAUTH') hooks.onCredentialFailure?.(failure);
        throw failure;
      }
    },
    close() {
      client.destroy();
    },
  };
}

function checkRecipients(envelope: Envelope): void {
  if (envelope.to.length <= SES_LIMITS.maxRecipients) return;
  // the config check keeps policy.maxRecipients within SES's limit; this is the last guard
  throw smtpFailure(452, '4.5.3', `Too many recipients for one SES message (${envelope.to.length}, at most ${SES_LIMITS.maxRecipients})`);
}

/** The whole message: the API takes it in one request. Refused past SES's size limit, before anything is sent. */
function readWhole(raw: Readable, signal: AbortSignal): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (error?: Error) => {
      signal.removeEventListener('abort', onAbort);
      raw.removeListener('data', onData);
      raw.removeListener('end', onEnd);
      raw.removeListener('error', finish);
      if (error) {
        raw.destroy();
        reject(error);
      } else resolve(Buffer.concat(chunks, size));
    };
    const onAbort = () => finish(Object.assign(new Error('transaction aborted before the message was sent to SES'), { name: 'AbortError' }));
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > SES_LIMITS.maxMessageBytes) {
        finish(smtpFailure(552, '5.3.4', `Message exceeds SES's maximum size of ${SES_LIMITS.maxMessageBytes} bytes`));
      } else chunks.push(chunk);
    };
    const onEnd = () => finish();
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    raw.on('data', onData);
    raw.once('end', onEnd);
    raw.once('error', finish);
  });
}
