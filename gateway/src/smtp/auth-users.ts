/**
 * The users that may AUTH to the gateway: a file of `username:hash` lines, mounted
 * from a Kubernetes Secret, with hashes `scrypt$N$r$p$<salt base64>$<key base64>`.
 * Only hashes are stored, so the Secret never holds a password an attacker could
 * reuse. Verification runs scrypt asynchronously (off the event loop), compares
 * in constant time, and spends the same work on unknown users, so neither the
 * reply time nor the reply tells which user names exist.
 *
 * `watchUserStore` reloads the file when the Secret changes; a bad new file is
 * reported and the previous users stay in force.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { watchParsed } from './watched-files';

export interface ScryptParameters {
  /** CPU/memory cost, a power of two. @default 16384 (16 MiB with r=8; tens of ms) */
  readonly N: number;
  /** Block size. @default 8 */
  readonly r: number;
  /** Parallelism. @default 1 */
  readonly p: number;
}

export interface HashPasswordOptions extends Partial<ScryptParameters> {
  /** Random salt length in bytes. @default 16 */
  readonly saltBytes?: number;
  /** Derived key length in bytes. @default 32 */
  readonly keyBytes?: number;
}

export const DEFAULT_SCRYPT: ScryptParameters = { N: 16384, r: 8, p: 1 };

/** Bounds that keep a hostile or mistyped hash from costing unbounded memory or time. */
const LIMITS = { maxN: 2 ** 20, maxR: 32, maxP: 16, minSalt: 8, minKey: 16, maxKey: 128 };

interface StoredHash extends ScryptParameters {
  readonly salt: Buffer;
  readonly key: Buffer;
}

export interface UserStore {
  /** Number of users. */
  readonly size: number;
  /** Whether `username` exists (for logs; do not use it to shortcut verify). */
  has(username: string): boolean;
  /** True when `password` is the user's; takes the same time whether or not the user exists. */
  verify(username: string, password: string): Promise<boolean>;
}

export interface WatchedUserStore extends UserStore {
  /** Re-reads the file now (what the timer and file events do); a bad file goes to `onError`. */
  check(): Promise<void>;
  /** Stops watching the file. */
  close(): void;
}

export interface WatchUserStoreOptions {
  /** Re-read the file this often even without a file system event. @default 10000 */
  readonly pollMs?: number;
  /** Called after a changed file was loaded. */
  readonly onReload?: (store: UserStore) => void;
}

/** A users file or hash that cannot be used; the message names the file and line. */
export class UserFileError extends Error {
  readonly code = 'USER_FILE';
  constructor(message: string) {
    super(message);
    this.name = 'UserFileError';
  }
}

function scrypt(password: string | Buffer, salt: Buffer, keyBytes: number, params: ScryptParameters): Promise<Buffer> {
  // Node refuses above 32 MiB unless told; the bounds above cap what a hash may ask
  const options: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: 128 * params.N * params.r * (params.p + 1) + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scryptCallback(password, salt, keyBytes, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

/** A hash for `password` in the users-file format. */
export async function hashPassword(password: string, options: HashPasswordOptions = {}): Promise<string> {
  const params = { N: options.N ?? DEFAULT_SCRYPT.N, r: options.r ?? DEFAULT_SCRYPT.r, p: options.p ?? DEFAULT_SCRYPT.p };
  const saltBytes = options.saltBytes ?? 16;
  const keyBytes = options.keyBytes ?? 32;
  const problem = checkParameters(params, saltBytes, keyBytes);
  if (problem) throw new RangeError(`Cannot hash password: ${problem}`);
  const salt = randomBytes(saltBytes);
  const key = await scrypt(password, salt, keyBytes, params);
  return ['scrypt', params.N, params.r, params.p, salt.toString('base64'), key.toString('base64')].join('$');
}

function checkParameters({ N, r, p }: ScryptParameters, saltBytes: number, keyBytes: number): string | undefined {
  if (!Number.isSafeInteger(N) || N < 2 || N > LIMITS.maxN || (N & (N - 1)) !== 0) return `N=${N} must be a power of two from 2 to ${LIMITS.maxN}`;
  if (!Number.isSafeInteger(r) || r < 1 || r > LIMITS.maxR) return `r=${r} must be from 1 to ${LIMITS.maxR}`;
  if (!Number.isSafeInteger(p) || p < 1 || p > LIMITS.maxP) return `p=${p} must be from 1 to ${LIMITS.maxP}`;
  if (saltBytes < LIMITS.minSalt) return `salt of ${saltBytes} bytes is shorter than ${LIMITS.minSalt}`;
  if (keyBytes < LIMITS.minKey || keyBytes > LIMITS.maxKey) return `key of ${keyBytes} bytes must be from ${LIMITS.minKey} to ${LIMITS.maxKey} bytes`;
  return undefined;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Parses one hash; throws a plain message (the caller adds file and line). */
function parseHash(text: string): StoredHash {
  const fields = text.split('$');
  if (fields.length !== 6 || fields[0] !== 'scrypt') {
    throw new Error(`expected a hash "scrypt$N$r$p$<salt base64>$<key base64>" (make hash-password prints one), got ${fields.length} "$"-separated fields starting ${JSON.stringify(fields[0])}`);
  }
  const [, nText, rText, pText, saltText, keyText] = fields;
  for (const [name, value] of [['N', nText], ['r', rText], ['p', pText]]) {
    if (!/^[1-9]\d{0,9}$/.test(value)) throw new Error(`scrypt ${name}=${JSON.stringify(value)} is not a positive integer`);
  }
  for (const [name, value] of [['salt', saltText], ['key', keyText]]) {
    if (!BASE64.test(value)) throw new Error(`scrypt ${name} is not base64`);
  }
  const params = { N: Number(nText), r: Number(rText), p: Number(pText) };
  const salt = Buffer.from(saltText, 'base64');
  const key = Buffer.from(keyText, 'base64');
  const problem = checkParameters(params, salt.length, key.length);
  if (problem) throw new Error(`scrypt ${problem}`);
  return { ...params, salt, key };
}

class FileUserStore implements UserStore {
  /** Hashed for unknown users so they cost what known users cost. */
  private readonly decoy: StoredHash;

  constructor(private readonly users: ReadonlyMap<string, StoredHash>) {
    // the costliest parameters in the file, so an unknown user is never the fastest reply
    let costliest: StoredHash | undefined;
    for (const hash of users.values()) {
      if (!costliest || hash.N * hash.r * hash.p > costliest.N * costliest.r * costliest.p) costliest = hash;
    }
    const params = costliest ?? DEFAULT_SCRYPT;
    this.decoy = { N: params.N, r: params.r, p: params.p, salt: randomBytes(16), key: randomBytes(costliest?.key.length ?? 32) };
  }

  get size(): number {
    return this.users.size;
  }

  has(username: string): boolean {
    return this.users.has(username);
  }

  async verify(username: string, password: string): Promise<boolean> {
    const known = this.users.get(username);
    const stored = known ?? this.decoy;
    const derived = await scrypt(password, stored.salt, stored.key.length, stored);
    // evaluate both so the result costs the same either way
    const matches = timingSafeEqual(derived, stored.key);
    return matches && known !== undefined;
  }
}

/** Parses users-file text; `source` names the file in errors. */
export function parseUserFile(text: string, source: string): UserStore {
  const users = new Map<string, StoredHash>();
  const lineOf = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const lineNumber = index + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    // the hash holds no ":", so the last one separates it and user names may contain ":"
    const colon = line.lastIndexOf(':');
    const where = `${source}:${lineNumber}`;
    if (colon === -1) throw new UserFileError(`${where}: expected "username:hash", found no ":"`);
    const username = line.slice(0, colon).trim();
    if (username === '') throw new UserFileError(`${where}: the user name before ":" is empty`);
    const previous = lineOf.get(username);
    if (previous !== undefined) throw new UserFileError(`${where}: user ${JSON.stringify(username)} is already defined on line ${previous}`);
    try {
      users.set(username, parseHash(line.slice(colon + 1).trim()));
    } catch (error) {
      throw new UserFileError(`${where}: user ${JSON.stringify(username)}: ${(error as Error).message}`);
    }
    lineOf.set(username, lineNumber);
  });
  return new FileUserStore(users);
}

/**
 * Loads the users file and keeps it loaded as the file changes (Kubernetes
 * Secret updates swap a symlink). `onError` receives reload failures; the
 * previous users stay in force until a valid file appears.
 */
export function watchUserStore(path: string, onError: (error: Error) => void, options: WatchUserStoreOptions = {}): WatchedUserStore {
  const watch = watchParsed({
    files: [path],
    parse: ([content]) => parseUserFile(content.toString('utf8'), path),
    error: (message) => new UserFileError(message),
    unreadable: (file, cause) => `Cannot read users file ${file}: ${cause.message}`,
    keeps: 'users',
    onChange: options.onReload,
    onError,
    pollMs: options.pollMs,
  });
  return {
    get size() {
      return watch.current.size;
    },
    has: (username) => watch.current.has(username),
    verify: (username, password) => watch.current.verify(username, password),
    check: () => watch.check(),
    close: () => watch.close(),
  };
}
