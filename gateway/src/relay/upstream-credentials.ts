/**
 * The smarthost's user name, password and CA bundle, read from their mounted
 * files at start-up and again whenever the files change (a rotated SES SMTP
 * password in an existingSecret reaches the pod without a restart: no chart
 * checksum can see such a Secret). Start-up fails on a missing or empty file;
 * a bad file later is reported and the values in use stay.
 */
import { watchParsed, type ReloadOptions } from '../smtp/watched-files';

export interface UpstreamCredentialFiles {
  readonly usernameFile: string;
  readonly passwordFile: string;
  readonly caFile: string;
}

export interface UpstreamCredentials {
  /** Absent when no user name and password files are configured (no AUTH). */
  readonly auth?: { readonly user: string; readonly pass: string };
  readonly ca?: Buffer;
}

type FileKey = keyof UpstreamCredentialFiles;

/** The configured files in a fixed order, with the key naming each. */
function configured(files: UpstreamCredentialFiles): Array<[FileKey, string]> {
  const keys: FileKey[] = files.usernameFile || files.passwordFile ? ['usernameFile', 'passwordFile'] : [];
  if (files.caFile) keys.push('caFile');
  return keys.map((key) => [key, files[key]]);
}

function parse(entries: Array<[FileKey, string]>, contents: readonly Buffer[]): UpstreamCredentials {
  const byKey = new Map<FileKey, Buffer>(entries.map(([key], i) => [key, contents[i]]));
  const secret = (key: FileKey) => {
    const value = (byKey.get(key) ?? Buffer.alloc(0)).toString('utf8').trim();
    const file = entries.find(([name]) => name === key)?.[1] ?? '';
    if (!value) throw new Error(`upstream.${key}: ${JSON.stringify(file)} is empty`);
    return value;
  };
  return {
    auth: byKey.has('usernameFile') ? { user: secret('usernameFile'), pass: secret('passwordFile') } : undefined,
    ca: byKey.get('caFile'),
  };
}

export interface CredentialWatch {
  /** What the files hold now (as last read successfully). */
  readonly current: UpstreamCredentials;
  close(): void;
}

export type WatchCredentialsOptions = ReloadOptions<UpstreamCredentials>;

/** Reads the files now (throwing a start-up error naming the key) and follows their changes. */
export function watchCredentials(files: UpstreamCredentialFiles, options: WatchCredentialsOptions): CredentialWatch {
  const entries = configured(files);
  if (!entries.length) return { current: {}, close: () => undefined };
  const keyOf = new Map(entries.map(([key, file]) => [file, key]));
  return watchParsed({
    files: entries.map(([, file]) => file),
    parse: (contents) => parse(entries, contents),
    error: (message) => new Error(message),
    unreadable: (file, cause) => `upstream.${keyOf.get(file) ?? 'files'}: cannot read ${JSON.stringify(file)}: ${cause.message}`,
    keeps: 'credentials',
    onChange: options.onChange,
    onError: options.onError,
    pollMs: options.pollMs,
  });
}
