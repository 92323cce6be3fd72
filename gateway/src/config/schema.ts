/**
 * The gateway's configuration: one zod schema that is at once the type, the
 * defaults, the validation at start-up and (through synth) the JSON schema of the
 * chart's `config` values. Defaults are safe (loopback-only relaying, TLS required
 * upstream, no open relay, deadlines on every session); the one value without a
 * default is where mail goes: upstream.host, or devUpstream.enabled as `make run` sets.
 */
import { z } from 'zod';
import { canonicalPattern } from '../smtp/domains';
import { parseCidr } from './cidr';
import { APPLICATIONS_FILE_NAME, CONTAINER_PORTS, FORWARDED_EXTENSIONS, MOUNT_PATHS, SECRET_KEYS } from './constants';

const port = z.number().int().min(1).max(65535);
/** A port to listen on; 0 lets the OS pick a free one (tests, local runs), and the gateway logs the real one. */
const listenPort = z.number().int().min(0).max(65535);

export const UPSTREAM_TRANSPORTS = ['smtp', 'ses'] as const;

/** Where the number of ready gateway pods comes from (relay/peer-count.ts). */
export const PEER_COUNT_SOURCES = ['dns', 'file', 'static'] as const;

/** What one SES SendEmail request may carry. */
export const SES_LIMITS = { maxRecipients: 50, maxMessageBytes: 40 * 1024 * 1024 } as const;

const seconds = (value: number, description: string) => z.number().int().min(1).default(value).describe(description);

const isLoopbackHost = (host: string) => host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

interface AccountShareSettings {
  readonly accountMaxSendRate: number;
  readonly accountShare: { readonly source: (typeof PEER_COUNT_SOURCES)[number]; readonly dnsName: string; readonly file: string };
}

/** A shared account rate needs the source of the pod count it is divided by. */
function checkAccountShare(upstream: AccountShareSettings, ctx: z.RefinementCtx): void {
  if (upstream.accountMaxSendRate === 0) return;
  const { source, dnsName, file } = upstream.accountShare;
  if (source === 'dns' && !dnsName) {
    ctx.addIssue({
      code: 'custom',
      path: ['accountShare', 'dnsName'],
      message: `upstream.accountMaxSendRate is ${upstream.accountMaxSendRate} and upstream.accountShare.source is dns, so upstream.accountShare.dnsName must name the headless Service listing the ready gateway pods`,
    });
  }
  if (source === 'file' && !file) {
    ctx.addIssue({
      code: 'custom',
      path: ['accountShare', 'file'],
      message: `upstream.accountMaxSendRate is ${upstream.accountMaxSendRate} and upstream.accountShare.source is file, so upstream.accountShare.file must name the file holding the number of gateway pods`,
    });
  }
}

interface SesSettings {
  readonly host: string;
  readonly extensions: readonly string[];
  readonly usernameFile: string;
  readonly passwordFile: string;
  readonly ses: { readonly region: string; readonly endpoint: string };
}

/** transport ses: a region, an https endpoint (http only on loopback), and no smarthost or SMTP password that would be ignored. */
function checkSes(upstream: SesSettings, ctx: z.RefinementCtx): void {
  if (!upstream.ses.region) {
    ctx.addIssue({ code: 'custom', path: ['ses', 'region'], message: 'upstream.transport is ses, so upstream.ses.region must name the SES region, e.g. eu-west-1' });
  }
  if (upstream.host) {
    ctx.addIssue({ code: 'custom', path: ['host'], message: 'upstream.transport is ses, which sends to the SES API of upstream.ses.region: leave upstream.host (the SMTP smarthost) empty' });
  }
  // the API takes the raw message and the addresses only: no DSN parameters, and SES has no SMTPUTF8
  const unsupported = upstream.extensions.filter((extension) => extension !== '8BITMIME');
  if (unsupported.length) {
    ctx.addIssue({
      code: 'custom',
      path: ['extensions'],
      message: `upstream.transport is ses, which can forward 8BITMIME only (the SES API takes no DSN parameters and SES offers no SMTPUTF8): remove ${unsupported.join(', ')}`,
    });
  }
  for (const key of ['usernameFile', 'passwordFile'] as const) {
    if (!upstream[key]) continue;
    ctx.addIssue({
      code: 'custom',
      path: [key],
      message: `upstream.transport is ses, which signs requests with the pod's AWS credentials and never uses an SMTP password: leave upstream.${key} empty`,
    });
  }
  const endpoint = upstream.ses.endpoint;
  if (!endpoint) return;
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  const hostname = url?.hostname.replace(/^\[|\]$/g, '');
  if (url && (url.protocol === 'https:' || (url.protocol === 'http:' && hostname && isLoopbackHost(hostname)))) return;
  ctx.addIssue({
    code: 'custom',
    path: ['ses', 'endpoint'],
    message: 'expected an https:// URL (http:// only on loopback, for tests)',
  });
}

/** "10.0.0.0/8", "::1/128" or a bare address (a /32 or /128). */
export const cidr = z.string().refine((value) => parseCidr(value) !== undefined, {
  message: 'expected an IP address or CIDR block such as 10.0.0.0/8 or fd00::/8',
});

const DOMAIN_EXPECTED = 'expected a domain name such as example.com, *.example.com, bücher.example or xn--bcher-kva.example';
/** Either spelling of an internationalised domain; smtp/domains.ts compares them in one canonical form. */
export const domain = z
  .string()
  // the JSON schema's share of the rule (the chart validates with it); the refine does the rest
  .regex(/^(\*\.)?[^\s@*[\]]+$/u, { message: DOMAIN_EXPECTED, abort: true })
  .refine((value) => canonicalPattern(value) !== undefined, { message: DOMAIN_EXPECTED })
  .overwrite((value) => canonicalPattern(value) ?? value);

const listener = (defaultPort: number, enabled: boolean, what: string) =>
  z
    .object({
      enabled: z.boolean().default(enabled).describe(`Serve the ${what} listener.`),
      port: listenPort.default(defaultPort).describe('TCP port to listen on (unprivileged in the pod); 0 picks a free port.'),
    })
    .strict()
    .prefault({});

/**
 * Every setting, without the checks across groups: the chart's `config` values
 * (synth) are this, since a chart may leave upstream.host to an overlay.
 */
export const configFields = z
  .object({
    hostname: z
      .string()
      .default('')
      .describe('Name used in the SMTP greeting and Received headers; empty means the host name.'),
    listenAddress: z.string().default('127.0.0.1').describe('Address the SMTP listeners bind to.'),
    listeners: z
      .object({
        relay: listener(CONTAINER_PORTS.relay, true, 'relay (plain SMTP, STARTTLS offered)'),
        submission: listener(CONTAINER_PORTS.submission, false, 'submission (STARTTLS, then AUTH required)'),
        smtps: listener(CONTAINER_PORTS.smtps, false, 'implicit TLS'),
      })
      .strict()
      .prefault({})
      .describe('The SMTP listeners.'),
    tls: z
      .object({
        certFile: z.string().default('').describe('PEM certificate chain; reloaded when the file changes. Empty disables STARTTLS and implicit TLS.'),
        keyFile: z.string().default('').describe('PEM private key; reloaded when the file changes.'),
        minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2').describe('Lowest TLS version offered to clients.'),
      })
      .strict()
      .superRefine((tls, ctx) => {
        if (Boolean(tls.certFile) === Boolean(tls.keyFile)) return;
        const [given, value] = tls.certFile ? ['certFile', tls.certFile] : ['keyFile', tls.keyFile];
        ctx.addIssue({
          code: 'custom',
          path: [given === 'certFile' ? 'keyFile' : 'certFile'],
          message: `tls.certFile and tls.keyFile go together: set both or neither (tls.${given} is ${JSON.stringify(value)})`,
        });
      })
      .prefault({})
      .describe('Inbound TLS.'),
    proxyProtocol: z
      .object({
        enabled: z.boolean().default(false).describe('Expect a PROXY protocol v1/v2 header from trusted load balancers.'),
        trustedNetworks: z.array(cidr).default([]).describe('Load balancer networks allowed to send a PROXY header; others sending one are refused.'),
      })
      .strict()
      .superRefine((proxy, ctx) => {
        // on with no trusted peer, every load balancer's header would be refused: no client could connect
        if (proxy.enabled && proxy.trustedNetworks.length === 0) {
          ctx.addIssue({
            code: 'custom',
            path: ['trustedNetworks'],
            message: 'proxyProtocol.enabled is true, so proxyProtocol.trustedNetworks must name the load balancer networks (got [])',
          });
        }
      })
      .prefault({})
      .describe('PROXY protocol (AWS NLB sends v2).'),
    policy: z
      .object({
        allowedNetworks: z
          .array(cidr)
          .default(['127.0.0.0/8', '::1/128'])
          .describe('Client networks that may relay without AUTH.'),
        senderDomains: z
          .array(domain)
          .default([])
          .describe('Domains allowed in MAIL FROM and the header From; empty allows any.'),
        recipientDomains: z
          .object({
            allow: z.array(domain).default([]).describe('If not empty, only these recipient domains are accepted.'),
            deny: z.array(domain).default([]).describe('Recipient domains always refused.'),
          })
          .strict()
          .prefault({}),
        maxRecipients: z.number().int().min(1).max(1000).default(50).describe('Recipients per message (SES allows 50).'),
        maxMessageBytes: z.number().int().min(1024).default(26214400).describe('Largest message accepted, advertised with SIZE.'),
        maxConnections: z.number().int().min(1).default(1000).describe('Open SMTP connections in total.'),
        maxConnectionsPerIp: z.number().int().min(1).default(100).describe('Open SMTP connections per client (IP address; an IPv6 client by its prefix, see clientPrefixLength).'),
        messagesPerMinute: z
          .number()
          .int()
          .min(0)
          .default(0)
          .describe('Messages per minute per client (as for maxConnectionsPerIp) or AUTH user; 0 means no limit.'),
        lineEndings: z
          .enum(['reject', 'normalize'])
          .default('reject')
          .describe('Bare CR or LF in message data: reject (550, stops SMTP smuggling) or normalize to CRLF.'),
        clientPrefixLength: z
          .object({
            ipv4: z.number().int().min(8).max(32).default(32).describe('Leading bits of an IPv4 client address that make one client.'),
            ipv6: z
              .number()
              .int()
              .min(16)
              .max(128)
              .default(64)
              .describe('Leading bits of an IPv6 client address that make one client: a /64 is one host\'s subnet, its owner picks any address in it.'),
          })
          .strict()
          .prefault({})
          .describe('How per-client limits (maxConnectionsPerIp, messagesPerMinute, auth.maxFailures) group client addresses.'),
      })
      .strict()
      .prefault({})
      .describe('Who may relay what.'),
    auth: z
      .object({
        usersFile: z
          .string()
          .default('')
          .describe(`File of "user:scrypt-hash" lines (the chart mounts it at ${MOUNT_PATHS.secretsDir}/${SECRET_KEYS.authUsers}); empty disables AUTH.`),
        allowInsecure: z.boolean().default(false).describe('Allow AUTH without TLS (tests only).'),
        maxFailures: z.number().int().min(1).default(5).describe('Failed AUTH attempts per client (policy.clientPrefixLength) within the window before AUTH is refused.'),
        failureWindowSeconds: z.number().int().min(1).default(300).describe('Window for counting failed AUTH attempts.'),
      })
      .strict()
      .prefault({})
      .describe('SMTP AUTH (PLAIN, LOGIN).'),
    applications: z
      .object({
        file: z
          .string()
          .default('')
          .describe(
            `YAML file of per-application policies: senders, message rate, recipients, SES configuration set and tags per AUTH user or client network (the chart mounts it at ${MOUNT_PATHS.applicationsDir}/${APPLICATIONS_FILE_NAME}); reloaded when it changes; empty turns per-application policy off.`,
          ),
        unmatched: z
          .enum(['global', 'refuse'])
          .default('global')
          .describe('A session that matches no application: global (only the global policy applies) or refuse (550 5.7.1 at MAIL FROM).'),
      })
      .strict()
      .superRefine((applications, ctx) => {
        // refuse without a file would refuse every client
        if (applications.unmatched === 'refuse' && !applications.file) {
          ctx.addIssue({ code: 'custom', path: ['unmatched'], message: 'applications.unmatched is refuse, so applications.file must name the applications file (got "")' });
        }
      })
      .prefault({})
      .describe('Per-application policy (README: Per-application policy).'),
    upstream: z
      .object({
        host: z.string().default('').describe('Smarthost, e.g. email-smtp.us-east-1.amazonaws.com; required with transport smtp unless devUpstream.enabled, empty with transport ses.'),
        port: port.default(587).describe('Smarthost port.'),
        security: z
          .enum(['starttls', 'tls', 'none'])
          .default('starttls')
          .describe('starttls (required, not opportunistic), tls (implicit), or none (loopback tests only).'),
        rejectUnauthorized: z.boolean().default(true).describe("Verify the smarthost's certificate."),
        caFile: z.string().default('').describe('Extra CA bundle for the smarthost.'),
        usernameFile: z.string().default('').describe('File holding the SMTP user name; empty sends no AUTH.'),
        passwordFile: z.string().default('').describe('File holding the SMTP password.'),
        maxConnections: z.number().int().min(1).default(5).describe('Pooled connections to the smarthost.'),
        // Renewal lets a connection follow the smarthost's DNS (SES rotates its addresses) rather than pin one
        // host for ever; at 1,000 a busy pod renews each connection every few seconds and a quiet one every few
        // minutes (Postfix reuses a connection for 300 s), while nodemailer's 100 cost a reconnect per 100 messages.
        maxMessagesPerConnection: z
          .number()
          .int()
          .min(1)
          .default(1000)
          .describe('Messages sent over one pooled connection before it is renewed.'),
        messagesPerSecond: z
          .number()
          .min(0)
          .default(0)
          .describe("Messages per second this pod sends at most, whatever the other pods do; one second's worth may go at once; 0 means no limit. To share the SES account's rate among the pods, set accountMaxSendRate instead."),
        accountMaxSendRate: z
          .number()
          .min(0)
          .default(0)
          .describe(
            "The SES account's maximum send rate (messages per second), shared by every ready pod of the release: each sends accountMaxSendRate / ready pods (accountShare), at most messagesPerSecond if that is set too; 0 means no shared rate.",
          ),
        accountShare: z
          .object({
            source: z
              .enum(PEER_COUNT_SOURCES)
              .default('dns')
              .describe("Where the number of ready pods comes from: dns (the A/AAAA records of dnsName, the chart's headless Service of ready pods), file (a whole number in file) or static (peers)."),
            dnsName: z
              .string()
              .default('')
              .describe("Fully qualified name of the headless Service whose records are the ready gateway pods (source dns); left empty, the chart sets its own <fullname>-peers Service (a canary: its stable release's)."),
            dnsServers: z
              .array(z.string())
              .default([])
              .describe('DNS servers to ask (address or address:port, source dns); empty uses the pod\'s own resolv.conf (the cluster DNS). Set only for tests.'),
            file: z.string().default('').describe('File holding the number of gateway pods (source file).'),
            peers: z
              .number()
              .int()
              .min(1)
              .default(1)
              .describe('The number of pods with source static; with dns or file, the number assumed until the first answer and kept while lookups fail (the chart sets the most pods it may run).'),
            refreshSeconds: z.number().int().min(1).max(30).default(10).describe('How often dns or file is read again: a scale-up or scale-down reaches every pod\'s share within this plus the DNS TTL.'),
            recoverySeconds: z
              .number()
              .min(1)
              .default(30)
              .describe('After a throttling reply halves the pod\'s rate, the time its rate takes to grow back linearly from 0 to the full share.'),
          })
          .strict()
          .prefault({})
          .describe('How a pod finds its share of accountMaxSendRate.'),
        connectionTimeoutMs: z.number().int().min(100).default(10000).describe('Time to establish a connection.'),
        socketTimeoutMs: z.number().int().min(100).default(60000).describe('Idle time allowed on an upstream socket.'),
        transport: z
          .enum(UPSTREAM_TRANSPORTS)
          .default('smtp')
          .describe('smtp relays to upstream.host; ses sends each message with the SES v2 API (SendEmail, raw content) using the AWS SDK default credentials (EKS Pod Identity in a cluster).'),
        maxWaitSeconds: z
          .number()
          .min(1)
          .max(300)
          .default(20)
          .describe('Longest a message waits for a send slot (messagesPerSecond) or an upstream connection; past it the client gets 451 4.7.0 and nothing is sent. Keep it under client timeouts (often 60 s).'),
        ses: z
          .object({
            region: z.string().default('').describe('AWS region of the SES account, e.g. eu-west-1; required with transport ses.'),
            endpoint: z.string().default('').describe('SES API endpoint URL; empty uses the regional AWS endpoint (set it only for tests).'),
            configurationSet: z.string().default('').describe('SES configuration set for every message; empty sends without one.'),
            requestTimeoutMs: z.number().int().min(100).default(30000).describe('Longest one SendEmail request may take; then the client gets 451.'),
          })
          .strict()
          .prefault({})
          .describe('The SES v2 API (transport ses).'),
        extensions: z
          .array(z.enum(FORWARDED_EXTENSIONS))
          .default(['8BITMIME'])
          .describe(
            "ESMTP extensions the smarthost offers, which the gateway then advertises to clients and forwards: 8BITMIME (BODY=), SMTPUTF8, DSN (RET, ENVID, NOTIFY, ORCPT). Parameters of extensions not listed are refused (555 5.5.4). List only what the smarthost's EHLO shows (after STARTTLS): a message whose upstream connection turns out not to offer a listed extension it needs gets 451 and is never sent without it.",
          ),
      })
      .strict()
      .superRefine((upstream, ctx) => {
        checkAccountShare(upstream, ctx);
        if (upstream.transport === 'ses') return checkSes(upstream, ctx);
        if (upstream.security !== 'none' || !upstream.host || isLoopbackHost(upstream.host)) return;
        ctx.addIssue({
          code: 'custom',
          path: ['security'],
          message: `expected starttls or tls: none sends the mail and the upstream password in clear, so it is only for a loopback upstream, and host ${JSON.stringify(upstream.host)} is not one`,
        });
      })
      .prefault({})
      .describe('Where mail is relayed to: a smarthost over SMTP, or the SES v2 API.'),
    spool: z
      .object({
        dir: z
          .string()
          .min(1)
          // under /tmp: the image's only writable place when no volume is mounted (the chart mounts an emptyDir)
          .default('/tmp/smtp-gateway-spool')
          .describe('Folder for messages too large to hold in memory while they are relayed; owned by this gateway process alone (leftovers are removed at start-up), so never shared by two.'),
        memoryThresholdBytes: z
          .number()
          .int()
          .min(0)
          .default(256 * 1024)
          .describe('A message up to this size is held in memory; a larger one spills to spool.dir.'),
        memoryMaxBytes: z
          .number()
          .int()
          .min(0)
          .default(64 * 1024 * 1024)
          .describe('All messages held in memory together; beyond it smaller messages spill to spool.dir too.'),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(512 * 1024 * 1024)
          .describe('All files in spool.dir together; a message that does not fit gets 452 4.3.1. Keep it below the volume size.'),
      })
      .strict()
      .prefault({})
      .describe('Each message is received whole before it is relayed: a slow client never holds an upstream connection.'),
    dsn: z
      .object({
        from: z
          .string()
          .regex(/^$|^[^\s@<>]+@[^\s@<>]+$/, { message: 'expected an address such as bounces@example.com, or empty' })
          .default('')
          .describe('Header From of the delivery status notifications sent to a sender for recipients the upstream refused (the envelope sender is always <>); empty means MAILER-DAEMON@ the hostname. With SES use an address of a verified identity.'),
      })
      .strict()
      .prefault({})
      .describe('Delivery status notifications (RFC 3464).'),
    devUpstream: z
      .object({
        enabled: z
          .boolean()
          .default(false)
          .describe('Relay to an embedded development upstream that writes .eml files and delivers nothing (make run); upstream.host must then be empty.'),
        dir: z.string().default('.dev-mail').describe('Folder the development upstream writes .eml files to.'),
      })
      .strict()
      .prefault({})
      .describe('The embedded development upstream, only when asked for: it answers 250 to every message and delivers none.'),
    deadlines: z
      .object({
        firstCommandSeconds: seconds(30, 'From the connection (its implicit TLS handshake included) to the first complete command line.'),
        commandSeconds: seconds(
          60,
          'Each command line must be complete this long after the gateway is ready for it; a deadline, not an idle timer: bytes trickled in do not extend it (Postfix smtpd_per_record_deadline). Covers the STARTTLS handshake, and closes idle pooled connections.',
        ),
        authOrMailSeconds: seconds(
          30,
          'From the connection to a successful AUTH or an accepted MAIL FROM, on every listener: what a client may hold a slot for before it does anything useful.',
        ),
        dataGraceSeconds: seconds(30, 'Time DATA may take before the minimum rate applies (the base of the Postfix-style deadline below).'),
        dataMinBytesPerSecond: z
          .number()
          .int()
          .min(1)
          .default(500)
          .describe('Minimum DATA rate: each byte received extends the DATA deadline by 1/rate seconds (Postfix smtpd_min_data_rate, also 500).'),
        dataMaxSeconds: seconds(600, 'The whole DATA phase, 354 to the final dot, at any rate (RFC 5321 section 4.5.3.2.6: 10 minutes).'),
        sessionMaxSeconds: seconds(3600, 'A whole session; reached while the gateway works on a command, it ends right after the reply.'),
        maxCommands: z.number().int().min(10).default(10000).describe('Commands per session (a pooled client sends about 5 + recipients per message).'),
      })
      .strict()
      .prefault({})
      .describe('Inbound deadlines; each expiry answers 421 4.4.2 and closes the connection.'),
    ops: z
      .object({
        listenAddress: z.string().default('127.0.0.1').describe('Address the ops server binds to.'),
        port: listenPort.default(CONTAINER_PORTS.ops).describe('Port for /metrics, /healthz and /readyz; 0 picks a free port.'),
      })
      .strict()
      .prefault({})
      .describe('Metrics and health endpoints.'),
    drain: z
      .object({
        delaySeconds: z.number().min(0).default(5).describe('After SIGTERM, keep accepting for this long so the load balancer can deregister.'),
        graceSeconds: z.number().min(0).default(30).describe('Then let in-flight transactions finish for at most this long.'),
      })
      .strict()
      .prefault({})
      .describe('Graceful shutdown on SIGTERM.'),
    log: z
      .object({
        level: z.enum(['debug', 'info', 'warn', 'error']).default('info').describe('Lowest level written.'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** Every setting, and which upstream: the smarthost, the SES API or, only when asked for, the development one. */
export const configSchema = configFields.superRefine((config, ctx) => {
  if (config.upstream.transport === 'ses') {
    if (config.devUpstream.enabled) {
      ctx.addIssue({
        code: 'custom',
        path: ['devUpstream', 'enabled'],
        message: 'devUpstream.enabled and upstream.transport ses exclude each other: relay to SES or to the development upstream, not both',
      });
    }
    if (config.policy.maxRecipients > SES_LIMITS.maxRecipients) {
      ctx.addIssue({
        code: 'custom',
        path: ['policy', 'maxRecipients'],
        message: `expected at most ${SES_LIMITS.maxRecipients} with upstream.transport ses (SES takes ${SES_LIMITS.maxRecipients} recipients per message)`,
      });
    }
    return;
  }
  // the development upstream answers 250 and delivers nothing: never the fallback for a missing host
  if (config.devUpstream.enabled && config.upstream.host) {
    ctx.addIssue({
      code: 'custom',
      path: ['devUpstream', 'enabled'],
      message: `devUpstream.enabled and upstream.host ${JSON.stringify(config.upstream.host)} exclude each other: relay to the smarthost or to the development upstream, not both`,
    });
  } else if (!config.devUpstream.enabled && !config.upstream.host) {
    ctx.addIssue({
      code: 'custom',
      path: ['upstream', 'host'],
      message: 'expected the smarthost, e.g. email-smtp.us-east-1.amazonaws.com (for local development without one set devUpstream.enabled: true, which delivers nothing)',
    });
  }
});

/** Configuration as written by a user (every key optional). */
export type GatewayConfigInput = z.input<typeof configSchema>;
/** Configuration after validation and defaults: plain data used everywhere inside. */
export type GatewayConfig = z.output<typeof configSchema>;
