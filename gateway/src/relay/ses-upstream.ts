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
import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2';
import { SES_LIMITS } from '../config/schema';
import { sesFailure, smtpFailure } from './ses-errors';
import type { UpstreamSettings } from './smtp-upstream';
import type { Envelope, SpooledMessage, Upstream, UpstreamAcceptance, UpstreamHooks } from './upstream';

export function createSesUpstream(settings: UpstreamSettings, hooks: UpstreamHooks = {}): Upstream {
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
    remoteName: endpoint ? new URL(endpoint).host : `email.${region}.amazonaws.com`,
    // the API takes the application's configuration set and tags as request fields, not headers
    applicationHeaders: false,
    async send(envelope, message, signal) {
      checkRecipients(envelope);
      const data = await wholeMessage(message);
      try {
        const output = await client.send(
          new SendEmailCommand({
            // a null sender (a bounce, MAIL FROM:<>) has no address to give: SES then uses the header From
            FromEmailAddress: envelope.from || undefined,
            // always the envelope: without Destination SES reads the headers, and Bcc recipients would be lost
            Destination: { ToAddresses: [...envelope.to] },
            Content: { Raw: { Data: data } },
            ConfigurationSetName: envelope.application?.configurationSet || configurationSet || undefined,
            EmailTags: emailTags(envelope),
          }),
          { abortSignal: signal },
        );
        // SES takes the message for every recipient or refuses it whole
        return { response: `250 Ok ${output.MessageId ?? 'unknown'}`, rejected: [] } satisfies UpstreamAcceptance;
      } catch (error) {
        const failure = sesFailure(error);
        if (failure.code === 'EAUTH') hooks.onCredentialFailure?.(failure);
        throw failure;
      }
    },
    // no connection pool to report: the send slots count the requests in flight
    poolSnapshot: () => undefined,
    close() {
      client.destroy();
    },
  };
}

/** The application's SES message tags, for attributing its sends, bounces and complaints. */
function emailTags(envelope: Envelope): Array<{ Name: string; Value: string }> | undefined {
  const tags = Object.entries(envelope.application?.tags ?? {});
  return tags.length ? tags.map(([Name, Value]) => ({ Name, Value })) : undefined;
}

function checkRecipients(envelope: Envelope): void {
  if (envelope.to.length <= SES_LIMITS.maxRecipients) return;
  // the config check keeps policy.maxRecipients within SES's limit; this is the last guard
  throw smtpFailure(452, '4.5.3', `Too many recipients for one SES message (${envelope.to.length}, at most ${SES_LIMITS.maxRecipients})`);
}

/** The whole message: the API takes it in one request. Refused past SES's size limit, before anything is sent. */
function wholeMessage(message: SpooledMessage): Promise<Buffer> {
  if (message.size > SES_LIMITS.maxMessageBytes) {
    return Promise.reject(smtpFailure(552, '5.3.4', `Message exceeds SES's maximum size of ${SES_LIMITS.maxMessageBytes} bytes`));
  }
  return message.buffer();
}
