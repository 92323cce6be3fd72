/**
 * The applications file: which clients are which application (by AUTH user, or
 * by client network for relay clients without AUTH) and each application's
 * sender addresses, message rate, recipient limit and SES configuration set and
 * message tags. YAML, mounted from a Secret or ConfigMap, validated once here
 * with errors naming the file, the entry and the key; `watchApplicationFile`
 * reloads it on change and keeps the previous applications when a new file is bad.
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { cidr, domain } from '../config/schema';
import { canonicalAddress } from './domains';
import { watchParsed, type ParsedWatch, type ReloadOptions } from './watched-files';

/** The metrics label of sessions that match no application; no application may take the name. */
export const UNMATCHED_APPLICATION = 'unmatched';

/** SES's own rules: configuration set names and message tag names and values (letters, digits, _ and -). */
const SES_NAME = /^[A-Za-z0-9_-]+$/;
const sesName = (max: number) => z.string().min(1).max(max).regex(SES_NAME, { message: 'expected only ASCII letters, digits, "_" and "-" (SES allows no other)' });

/** "noreply@example.com" (one address) or a domain pattern ("example.com", "*.example.com"). */
const sender = z.union([
  z
    .string()
    .regex(/^[^\s@<>]+@[^\s@<>]+$/, { message: 'expected an address such as noreply@example.com or a domain such as example.com' })
    .overwrite((value) => canonicalAddress(value).toLowerCase()),
  domain,
]);

/** One application; also the chart's `applications.inline` items (synth/values/schema.ts). */
export const applicationSchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9_-]{0,62})$/, { message: 'expected 1-63 lower-case letters, digits, "_" or "-", starting with a letter or digit (it is a metrics label value)' })
      .refine((name) => name !== UNMATCHED_APPLICATION, { message: `"${UNMATCHED_APPLICATION}" is the label of sessions that match no application` })
      .describe('The application, in logs and as the metrics label value.'),
    match: z
      .object({
        users: z.array(z.string().min(1)).default([]).describe('AUTH users of the application; an authenticated session is its user\'s application.'),
        networks: z.array(cidr).default([]).describe('Client networks of the application, for sessions without AUTH; the longest prefix wins.'),
      })
      .strict()
      .refine((match) => match.users.length + match.networks.length > 0, { message: 'expected at least one of users or networks' })
      .describe('Which sessions are this application.'),
    senders: z.array(sender).default([]).describe('Addresses (noreply@example.com) and domains (example.com, *.example.com) allowed in MAIL FROM and the header From; empty leaves the global policy alone.'),
    messagesPerMinute: z.number().int().min(0).default(0).describe('Messages per minute of the application in each pod, all its clients together; 0 means no limit of its own.'),
    maxRecipients: z.number().int().min(1).max(1000).optional().describe('Recipients per message, within policy.maxRecipients.'),
    ses: z
      .object({
        configurationSet: sesName(64).optional().describe('SES configuration set of its messages (its event destinations receive the sends, bounces and complaints).'),
        tags: z.record(sesName(256), sesName(256)).default({}).describe('SES message tags (name: value), e.g. app: billing, passed to the event destinations.'),
      })
      .strict()
      .prefault({})
      .describe('How SES attributes its messages.'),
  })
  .strict();

export const applicationFileSchema = z
  .object({ applications: z.array(applicationSchema).default([]) })
  .strict()
  .superRefine((file, ctx) => {
    // one user or network in two applications would make "which one" depend on the order
    const seen = new Map<string, string>();
    file.applications.forEach((app, index) => {
      const claims = [
        ...app.match.users.map((user, i) => ({ key: `user ${JSON.stringify(user)}`, path: ['users', i] })),
        ...app.match.networks.map((network, i) => ({ key: `network ${network}`, path: ['networks', i] })),
        { key: `name ${JSON.stringify(app.name)}`, path: [] },
      ];
      for (const claim of claims) {
        const owner = seen.get(claim.key);
        if (owner !== undefined) {
          const path = claim.path.length ? ['applications', index, 'match', ...claim.path] : ['applications', index, 'name'];
          ctx.addIssue({ code: 'custom', path, message: `${claim.key} is already used by application ${owner}` });
        } else seen.set(claim.key, JSON.stringify(app.name));
      }
    });
  });

export type ApplicationFile = z.output<typeof applicationFileSchema>;
export type ApplicationSettings = ApplicationFile['applications'][number];

/** An applications file that cannot be used; the message names the file, the entry and the key. */
export class ApplicationFileError extends Error {
  readonly code = 'APPLICATION_FILE';
  constructor(message: string) {
    super(message);
    this.name = 'ApplicationFileError';
  }
}

/** Parses and validates the file's text; `source` names the file in errors. */
export function parseApplicationFile(text: string, source: string): ApplicationFile {
  let data: unknown;
  try {
    data = parseYaml(text) ?? {};
  } catch (error) {
    throw new ApplicationFileError(`${source}: not YAML: ${(error as Error).message}`);
  }
  const result = applicationFileSchema.safeParse(data);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${source}: ${where(data, issue.path)}: ${describe(data, issue)}`);
  throw new ApplicationFileError(problems.join('\n'));
}

/** "applications[1] (billing).senders[0]": the entry by index and name, then the key. */
function where(data: unknown, path: readonly PropertyKey[]): string {
  let text = '';
  path.forEach((key, i) => {
    text += typeof key === 'number' ? `[${key}]` : `${text ? '.' : ''}${String(key)}`;
    if (i === 1 && path[0] === 'applications') {
      const name = (valueAt(data, path.slice(0, 2)) as { name?: unknown } | undefined)?.name;
      if (typeof name === 'string') text += ` (${name})`;
    }
  });
  return text || '(top level)';
}

function describe(data: unknown, issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key ${issue.keys.map((key) => JSON.stringify(key)).join(', ')}`;
  if (issue.code === 'invalid_key') return `got the key ${JSON.stringify(issue.path.at(-1))}; ${issue.issues.map((inner) => inner.message).join('; ')}`;
  const value = valueAt(data, issue.path);
  return `got ${value === undefined ? 'nothing' : JSON.stringify(value)}; ${issue.message.replace(/^Invalid [a-z ]+: /, '')}`;
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let current = data;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

export type ApplicationFileWatch = ParsedWatch<ApplicationFile>;

export type WatchApplicationFileOptions = ReloadOptions<ApplicationFile, ApplicationFileError>;

/** Loads the file (a start-up error when it is missing or invalid) and follows its changes. */
export function watchApplicationFile(path: string, options: WatchApplicationFileOptions): ApplicationFileWatch {
  return watchParsed({
    files: [path],
    parse: ([content]) => parseApplicationFile(content.toString('utf8'), path),
    error: (message) => new ApplicationFileError(message),
    unreadable: (file, cause) => `Cannot read applications file ${file}: ${cause.message}`,
    keeps: 'applications',
    onChange: options.onChange,
    onError: options.onError,
    pollMs: options.pollMs,
  });
}
