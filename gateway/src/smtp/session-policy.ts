/**
 * Who may relay what: the decisions behind MAIL FROM, RCPT TO and the header
 * From, as plain functions of the configuration and the session. Each returns
 * the refusal (relay/outcome.ts) or undefined to accept. The SMTP hooks
 * in listeners.ts only translate these into smtp-server callbacks.
 */
import type { GatewayConfig } from '../config/schema';
import { deferred, type Outcome, rejected } from '../relay/outcome';
import { clientKey, type ClientPrefixLength } from './client-key';
import { DomainList, domainOf } from './domains';
import { readHeaderFrom } from './header-from';
import { NetworkList } from './networks';
import { SlidingWindowLimiter } from './rate-limiter';

/** The parts of an smtp-server session the policy reads. */
export interface PolicySession {
  readonly remoteAddress: string;
  readonly user?: unknown;
  readonly envelope: { readonly rcptTo: readonly unknown[] };
}

const RELAY_DENIED: Outcome = rejected({ code: 550, status: '5.7.1', text: 'Relaying denied: authenticate or connect from an allowed network' }, 'relay_denied');

export class SessionPolicy {
  private readonly allowedNetworks: NetworkList;
  private readonly senderDomains: DomainList;
  private readonly recipientAllow: DomainList;
  private readonly recipientDeny: DomainList;
  private readonly maxRecipients: number;
  private readonly messageRate?: SlidingWindowLimiter;
  private readonly prefixLength: ClientPrefixLength;

  constructor(policy: GatewayConfig['policy']) {
    this.allowedNetworks = new NetworkList(policy.allowedNetworks);
    this.senderDomains = new DomainList(policy.senderDomains);
    this.recipientAllow = new DomainList(policy.recipientDomains.allow);
    this.recipientDeny = new DomainList(policy.recipientDomains.deny);
    this.maxRecipients = policy.maxRecipients;
    this.prefixLength = policy.clientPrefixLength;
    if (policy.messagesPerMinute > 0) {
      this.messageRate = new SlidingWindowLimiter({ limit: policy.messagesPerMinute, windowMs: 60_000 });
    }
  }

  /** Whether messages need their header From checked (a sender domain list is set). */
  get checksHeaderFrom(): boolean {
    return !this.senderDomains.empty;
  }

  /** Relay permission: an allowed network or an authenticated user. */
  mayRelay(session: PolicySession): boolean {
    return Boolean(session.user) || this.allowedNetworks.contains(session.remoteAddress);
  }

  checkMailFrom(address: string, session: PolicySession): Outcome | undefined {
    if (!this.senderDomains.empty && !this.senderDomains.matches(domainOf(address))) {
      return rejected({ code: 550, status: '5.7.1', text: `Sender domain of <${address}> is not allowed here` }, 'sender_domain');
    }
    // counted per message: one hit per MAIL FROM that passed the other checks
    if (this.messageRate && !this.messageRate.hit(rateKey(session, this.prefixLength))) {
      return deferred({ code: 451, status: '4.7.1', text: 'Message rate limit exceeded, try again later' }, 'rate_limited');
    }
    return undefined;
  }

  checkRcptTo(address: string, session: PolicySession): Outcome | undefined {
    if (!this.mayRelay(session)) return RELAY_DENIED;
    const domain = domainOf(address);
    if (this.recipientDeny.matches(domain) || (!this.recipientAllow.empty && !this.recipientAllow.matches(domain))) {
      return rejected({ code: 550, status: '5.7.1', text: `Recipient domain of <${address}> is not allowed` }, 'recipient_domain');
    }
    if (session.envelope.rcptTo.length >= this.maxRecipients) {
      return deferred({ code: 452, status: '4.5.3', text: `Too many recipients, at most ${this.maxRecipients} per message` }, 'too_many_recipients');
    }
    return undefined;
  }

  /**
   * The header From (read strictly, header-from.ts) must name only allowed sender
   * domains when a list is set. `block` is the raw header block.
   */
  checkHeaderFrom(block: Buffer): Outcome | undefined {
    if (this.senderDomains.empty) return undefined;
    return checkHeaderFromAddresses(block, (address) => this.senderDomains.matches(domainOf(address)), 'in an allowed sender domain');
  }
}

/**
 * The header From read strictly (header-from.ts), every address in it passed
 * to `allows`; `allowed` says what a refused address is not, in the reply.
 */
export function checkHeaderFromAddresses(block: Buffer, allows: (address: string) => boolean, allowed: string): Outcome | undefined {
  const reading = readHeaderFrom(block);
  if (!reading.ok) {
    return rejected({ code: 550, status: '5.7.1', text: `Header From refused: ${reading.problem}` }, 'header_from');
  }
  const bad = reading.addresses.find((address) => !allows(address));
  if (bad === undefined) return undefined;
  return rejected({ code: 550, status: '5.7.1', text: `Header From <${bad}> is not ${allowed}` }, 'header_from');
}

/** Rate limits apply per AUTH user when there is one, else per client (IPv6 by prefix). */
function rateKey(session: PolicySession, prefixLength: ClientPrefixLength): string {
  return session.user ? `user:${String(session.user)}` : `ip:${clientKey(session.remoteAddress, prefixLength)}`;
}
