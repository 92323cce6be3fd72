/**
 * The delivery status notification (RFC 3464, a multipart/report) the gateway
 * sends to the envelope sender for recipients the upstream refused permanently
 * after it took the message for others: past the final dot SMTP has no way to
 * tell the client about one recipient, so the gateway does what a
 * store-and-forward MTA does and bounces those. It carries the original
 * headers only (text/rfc822-headers), never the body.
 */
import { randomUUID } from 'node:crypto';
import { rfc5322Date } from './header-rewriter';
import { replyText } from './reply-mapping';
import type { RecipientRefusal, SpooledMessage } from './upstream';

export interface DsnInput {
  /** This gateway's name (Reporting-MTA). */
  readonly reportingMta: string;
  /** The upstream that refused (Remote-MTA). */
  readonly remoteMta: string;
  /** The header From of the notification. */
  readonly from: string;
  /** The envelope sender of the original message; the notification goes to it. */
  readonly sender: string;
  readonly refusals: ReadonlyArray<RecipientRefusal & { readonly orcpt?: string }>;
  /** RFC 3461 ENVID the client gave, echoed as Original-Envelope-Id. */
  readonly envid?: string;
  /** The original message's header block. */
  readonly headers: Buffer;
  readonly arrivalDate: Date;
}

const ASCII_LINE = /[^\x20-\x7e]/g;

export function buildDsn(input: DsnInput): Buffer {
  const boundary = `dsn-${randomUUID()}`;
  const date = rfc5322Date(input.arrivalDate);
  const listing = input.refusals.map((refusal) => `<${refusal.address}>: ${oneLine(refusal.reply)}`).join('\r\n');
  const human = [
    `This is the mail gateway at ${input.reportingMta}.`,
    '',
    `Your message was delivered to its other recipients, but ${input.remoteMta} refused`,
    'the following recipient(s) permanently. The message was not delivered to them:',
    '',
    listing,
  ].join('\r\n');
  const perRecipient = input.refusals
    .map((refusal) =>
      [
        // RFC 3464 2.3.1: the ORCPT the client gave, as it gave it
        ...(refusal.orcpt ? [`Original-Recipient: ${oneLine(refusal.orcpt)}`] : []),
        `Final-Recipient: ${addressType(refusal.address)}; ${refusal.address}`,
        'Action: failed',
        `Status: ${status(refusal)}`,
        `Remote-MTA: dns; ${input.remoteMta}`,
        `Diagnostic-Code: smtp; ${oneLine(refusal.reply)}`,
      ].join('\r\n'),
    )
    .join('\r\n\r\n');
  const parts = [
    `From: Mail Delivery System <${input.from}>`,
    `To: <${input.sender}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${rfc5322Date(new Date())}`,
    `Message-ID: <${randomUUID()}@${input.reportingMta}>`,
    // RFC 3834: an automatic message; no one should auto-reply to it
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated delivery status notification.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    human,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    ...(input.envid ? [`Original-Envelope-Id: ${oneLine(input.envid)}`] : []),
    `Reporting-MTA: dns; ${input.reportingMta}`,
    `Arrival-Date: ${date}`,
    '',
    perRecipient,
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
  ].join('\r\n');
  const headers = input.headers.toString('latin1').replace(/(\r\n)*$/, '\r\n');
  return Buffer.concat([Buffer.from(`${parts}\r\n`, 'latin1'), Buffer.from(headers, 'latin1'), Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1')]);
}

/** The message's header block (up to the empty line), at most `max` bytes. */
export async function headerBlock(message: SpooledMessage, max = 256 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  const stream = message.open();
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      const sofar = Buffer.concat(chunks, length);
      const end = sofar.indexOf('\r\n\r\n');
      if (end >= 0) return sofar.subarray(0, end + 2);
      if (length >= max) return sofar.subarray(0, max);
    }
    return Buffer.concat(chunks, length);
  } finally {
    stream.destroy();
  }
}

/** RFC 3463 status of a refusal: the upstream's enhanced code, else the class of its basic code. */
function status(refusal: RecipientRefusal): string {
  const { status: enhanced } = replyText(refusal.reply);
  return enhanced ?? `${String(refusal.code).charAt(0)}.0.0`;
}

/** RFC 6533: a non-ASCII address is of type utf-8. */
const addressType = (address: string) => (/^[\x20-\x7e]*$/.test(address) ? 'rfc822' : 'utf-8');

const oneLine = (text: string) => text.replace(/\r?\n/g, ' ').replace(ASCII_LINE, '?').trim();
