/**
 * Per-application policy: which application a session is (applications file,
 * application-file.ts) and the rules it adds to the global policy. An
 * application's rules only narrow: the global sender domains, recipient
 * domains, limits and rates still apply. Most specific match wins: an
 * authenticated session is its AUTH user's application (networks are not
 * consulted for it); a session without AUTH is the application of the longest
 * network prefix containing the client. A session that matches none follows
 * `applications.unmatched`: the global policy alone, or refused at MAIL FROM.
 */
import { parseCidr } from '../config/cidr';
import type { GatewayConfig } from '../config/schema';
import { deferred, type Outcome, rejected } from '../relay/outcome';
import type { ApplicationContext } from '../relay/upstream';
import { UNMATCHED_APPLICATION, type ApplicationFile, type ApplicationSettings } from './application-file';
import { DomainList, domainOf } from './domains';
import { NetworkList, unmapAddress } from './networks';
import { SlidingWindowLimiter } from './rate-limiter';
import { checkHeaderFromAddresses, type PolicySession } from './session-policy';

/** One application as loaded: its rules ready to check and what the upstream is told. */
export class Application {
  readonly name: string;
  readonly context: ApplicationContext;
  readonly maxRecipients?: number;
  /** Per application, across all its sessions and clients in this pod. */
  readonly messageRate?: SlidingWindowLimiter;
  private readonly senderDomains: DomainList;
  private readonly senderAddresses: ReadonlySet<string>;

  constructor(
    readonly settings: ApplicationSettings,
    previous?: Application,
  ) {
    this.name = settings.name;
    const { configurationSet, tags } = settings.ses;
    this.context = { name: settings.name, configurationSet, tags: Object.keys(tags).length ? tags : undefined };
    this.maxRecipients = settings.maxRecipients;
    const addresses = settings.senders.filter((entry) => entry.includes('@'));
    this.senderAddresses = new Set(addresses);
    this.senderDomains = new DomainList(settings.senders.filter((entry) => !entry.includes('@')));
    if (settings.messagesPerMinute > 0) {
      // a reload that keeps the rate keeps the window: reloading must not reset a limit
      this.messageRate =
        previous?.messageRate?.limit === settings.messagesPerMinute
          ? previous.messageRate
          : new SlidingWindowLimiter({ limit: settings.messagesPerMinute, windowMs: 60_000, maxKeys: 1 });
    }
  }

  /** Whether the application restricts its senders. */
  get checksSenders(): boolean {
    return this.settings.senders.length > 0;
  }

  /** An address the application may send as: listed itself, or in a listed domain (canonical address in). */
  allowsSender(address: string): boolean {
    if (!this.checksSenders) return true;
    return this.senderAddresses.has(address.toLowerCase()) || this.senderDomains.matches(domainOf(address));
  }
}

/** Headers through which SES over SMTP takes a configuration set and tags: set by the gateway only. */
const SES_HEADER = /(?:^|\n)(x-ses-configuration-set|x-ses-message-tags)[ \t]*:/i;

export class ApplicationPolicy {
  private byUser = new Map<string, Application>();
  /** Longest prefix first, so the first network that contains the client is the most specific. */
  private byNetwork: Array<{ networks: NetworkList; prefix: number; application: Application }> = [];
  private all: Application[] = [];

  constructor(
    private readonly unmatched: GatewayConfig['applications']['unmatched'],
    file: ApplicationFile,
  ) {
    this.update(file);
  }

  /** Puts a newly loaded file in force; sessions resolve against it from their next MAIL FROM. */
  update(file: ApplicationFile): void {
    const previous = new Map(this.all.map((app) => [app.name, app]));
    this.all = file.applications.map((settings) => new Application(settings, previous.get(settings.name)));
    this.byUser = new Map(this.all.flatMap((app) => app.settings.match.users.map((user) => [user, app] as const)));
    this.byNetwork = this.all
      .flatMap((application) =>
        application.settings.match.networks.map((network) => ({ networks: new NetworkList([network]), prefix: matchedPrefix(network), application })),
      )
      .sort((a, b) => b.prefix - a.prefix);
  }

  /** The configured names, the only values the `application` metrics label takes besides "unmatched". */
  get names(): string[] {
    return this.all.map((app) => app.name);
  }

  /** The session's application, or undefined when none matches. */
  resolve(session: Pick<PolicySession, 'remoteAddress' | 'user'>): Application | undefined {
    if (session.user) return this.byUser.get(String(session.user));
    return this.byNetwork.find((entry) => entry.networks.contains(session.remoteAddress))?.application;
  }

  /** Whether the session may send at all (applications.unmatched), and as this sender. */
  checkSender(application: Application | undefined, address: string, session: PolicySession): Outcome | undefined {
    if (!application) {
      if (this.unmatched === 'global') return undefined;
      const who = session.user ? `user ${JSON.stringify(String(session.user))}` : `client ${session.remoteAddress}`;
      return rejected({ code: 550, status: '5.7.1', text: `No application is configured for ${who}; mail from it is refused` }, 'no_application');
    }
    if (!application.allowsSender(address)) {
      return rejected({ code: 550, status: '5.7.1', text: `Sender <${address}> is not allowed for application ${application.name}` }, 'sender_domain');
    }
    return undefined;
  }

  /** One hit on the application's message rate; checked last at MAIL FROM so refused messages do not count. */
  checkRate(application: Application | undefined): Outcome | undefined {
    if (application?.messageRate && !application.messageRate.hit(application.name)) {
      return deferred({ code: 451, status: '4.7.1', text: `Message rate limit of application ${application.name} exceeded, try again later` }, 'rate_limited');
    }
    return undefined;
  }

  /** `accepted` is the number of recipients the transaction already has. */
  checkRcptTo(application: Application | undefined, accepted: number): Outcome | undefined {
    const max = application?.maxRecipients;
    if (max === undefined || accepted < max) return undefined;
    return deferred({ code: 452, status: '4.5.3', text: `Too many recipients, at most ${max} per message for application ${application?.name}` }, 'too_many_recipients');
  }

  /**
   * Every message: a client's own X-SES-* header could pick another
   * application's configuration set or tags, so it is refused. With sender
   * rules, the header From (read strictly) must name allowed senders only.
   */
  checkHeaders(application: Application | undefined, block: Buffer): Outcome | undefined {
    const ses = SES_HEADER.exec(block.toString('latin1'));
    if (ses) {
      return rejected({ code: 550, status: '5.7.1', text: `Header ${ses[1]} is set by the gateway from the application's policy; remove it from the message` }, 'ses_header');
    }
    if (!application?.checksSenders) return undefined;
    return checkHeaderFromAddresses(block, (address) => application.allowsSender(address), `allowed for application ${application.name}`);
  }
}

/** The prefix length as NetworkList matches it: ::ffff:10.0.0.0/104 is 10.0.0.0/8. */
function matchedPrefix(network: string): number {
  const parsed = parseCidr(network);
  if (!parsed) return 0;
  return parsed.family === 6 && unmapAddress(parsed.address) !== parsed.address && parsed.prefix >= 96 ? parsed.prefix - 96 : parsed.prefix;
}

/** The metrics label of a session's application. */
export function applicationLabel(application: Application | undefined): string {
  return application?.name ?? UNMATCHED_APPLICATION;
}
