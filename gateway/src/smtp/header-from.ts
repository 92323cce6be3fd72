/**
 * Reads the header From of a message the way the strictest reader downstream
 * would, so that the sender-domain check cannot be shown one address while a
 * mail client or DMARC shows another.
 *
 * Every field whose name is "From" once the whitespace before the colon is
 * dropped counts (RFC 5322 section 4.5.3 obs-optional allows that whitespace),
 * the first line included: mailsplit and mailparser take a first line starting
 * "From " for an mbox separator and skip it, a mail client does not.
 *
 * The value is parsed by two parsers: email-addresses (a grammar-driven RFC 5322
 * parser, run in strict mode: no obsolete syntax) and nodemailer's addressparser
 * (lenient, the one many mail tools use). A From is accepted only when the
 * strict parser reads a plain mailbox list, both parsers read the same
 * addresses, and nothing in it could be taken for another address (an "@" in
 * a display name, plain or inside an encoded word, or in a comment).
 */
import parseRfc5322 from 'email-addresses';
import libmime from 'libmime';
import addressparser from 'nodemailer/lib/addressparser';

export type HeaderFromReading =
  | { readonly ok: true; readonly addresses: readonly string[] }
  | { readonly ok: false; readonly problem: string };

/** The unfolded values of the fields named From, in order. */
export function headerFromValues(block: Buffer): string[] {
  // a field ends at a CRLF not followed by whitespace; latin1 keeps every byte as one character
  const fields = block.toString('latin1').split(/\r\n(?![ \t])/);
  const values: string[] = [];
  for (const field of fields) {
    const colon = field.indexOf(':');
    // trimmed on both sides: a block that starts with whitespace has no field before it to fold into
    if (colon < 0 || field.slice(0, colon).trim().toLowerCase() !== 'from') continue;
    values.push(Buffer.from(field.slice(colon + 1).replace(/\r\n/g, ''), 'latin1').toString('utf8'));
  }
  return values;
}

export function readHeaderFrom(block: Buffer): HeaderFromReading {
  const values = headerFromValues(block);
  if (values.length === 0) return refuse('the message has no From header');
  if (values.length > 1) return refuse(`the message has ${values.length} From headers; exactly one is allowed`);
  const value = values[0];
  if (value.length > MAX_FROM_LENGTH) return refuse(`the From header is longer than ${MAX_FROM_LENGTH} characters`);
  let reading = readings.get(value);
  if (!reading) {
    reading = readValue(value);
    if (readings.size >= READINGS_KEPT) readings.delete(readings.keys().next().value as string);
    readings.set(value, reading);
  }
  return reading;
}

/**
 * The strict parser is a combinator grammar whose time grows with the square of
 * some inputs (a display name of many short words: about 5 ms at 256 characters,
 * 12 ms at 512, 25 ms at 998, 114 ms at 2,000, then a stack overflow), so longer
 * values are refused before it runs. An application's From is far shorter.
 */
const MAX_FROM_LENGTH = 256;

/**
 * Readings by From value (at most MAX_FROM_LENGTH characters each, so about 1 MB).
 * Even a short value costs the strict parser 0.2-0.4 ms, and an application
 * sends from a handful of From values: this keeps that to the first message of each.
 */
const READINGS_KEPT = 1000;
const readings = new Map<string, HeaderFromReading>();

function readValue(value: string): HeaderFromReading {
  // quoted, ASCII only and bounded: it goes into a reply line and the log
  const shown = JSON.stringify(value.trim().slice(0, 100)).replace(/[^\x20-\x7e]/g, '?');

  const strict = parseRfc5322({ input: value, startAt: 'mailbox-list', strict: true, rfc6532: true, rejectTLD: false });
  if (!strict) return refuse(`the From header ${shown} is not a valid RFC 5322 mailbox list`);
  // the parser reports comments at run time although its typings leave the field out
  const mailboxes = strict.addresses.filter((entry) => entry.type === 'mailbox') as Array<parseRfc5322.ParsedMailbox & { comments?: string }>;
  for (const mailbox of mailboxes) {
    if (mailbox.comments) return refuse(`the From header ${shown} has a comment; comments are not allowed there`);
    const name = mailbox.name ? libmime.decodeWords(mailbox.name) : '';
    if (name.includes('@')) return refuse(`the display name in the From header ${shown} looks like an address`);
  }
  const strictAddresses = mailboxes.map((mailbox) => mailbox.address);
  const lenientAddresses = flatten(addressparser(value));
  if (strictAddresses.length === 0 || strictAddresses.join('\n').toLowerCase() !== lenientAddresses.join('\n').toLowerCase()) {
    return refuse(`the From header ${shown} is ambiguous: mail readers would not agree on its address`);
  }
  return { ok: true, addresses: strictAddresses };
}

const refuse = (problem: string): HeaderFromReading => ({ ok: false, problem });

type Parsed = { address?: string; group?: Parsed[] };

/** Group members count as addresses too: a group the strict parser refused must not match an empty list. */
function flatten(list: Parsed[]): string[] {
  return list.flatMap((entry) => (entry.group ? flatten(entry.group) : entry.address ? [entry.address] : []));
}
