/**
 * Prints a users-file line (`user:scrypt$...`) for SMTP AUTH, so operators can
 * build the auth-users Secret without the password ever being stored. The
 * password is read from stdin (piped, or typed without echo on a terminal) and
 * never taken from the command line, where it would end up in shell history and
 * the process list.
 *
 *   printf '%s' "$PASSWORD" | tsx gateway/src/cli/hash-password.ts app1
 */
import { DEFAULT_SCRYPT, hashPassword } from '../smtp/auth-users';

const HELP = `Usage: hash-password [--cost N] USERNAME

Reads a password from stdin and prints "USERNAME:HASH", a line for the gateway's
users file (auth.usersFile, mounted from the auth-users Secret).

On a terminal the password is prompted for without echo; otherwise stdin is read
up to the first newline (so 'printf %s "$PW" |' and 'echo "$PW" |' both work).

Options:
  --cost N   scrypt N, a power of two (default ${DEFAULT_SCRYPT.N}; r=${DEFAULT_SCRYPT.r}, p=${DEFAULT_SCRYPT.p})
  --help     show this help
`;

class UsageError extends Error {}

function parseArgs(argv: string[]): { username: string; N: number } {
  let username: string | undefined;
  let N = DEFAULT_SCRYPT.N;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--cost') {
      const value = argv[++i];
      N = Number(value);
      if (value === undefined || !Number.isSafeInteger(N) || N < 2 || (N & (N - 1)) !== 0) throw new UsageError(`--cost expects a power of two such as 16384, got ${JSON.stringify(value ?? '')}`);
    } else if (arg.startsWith('-')) {
      throw new UsageError(`unknown option ${JSON.stringify(arg)}`);
    } else if (username === undefined) {
      username = arg;
    } else {
      throw new UsageError(`expected one USERNAME, got also ${JSON.stringify(arg)}`);
    }
  }
  if (username === undefined || username === '') throw new UsageError('USERNAME is required');
  if (/[\s#]/.test(username[0]) || /[\r\n]/.test(username) || username.trim() !== username) {
    throw new UsageError(`USERNAME ${JSON.stringify(username)} must not start with "#" or contain line breaks or surrounding spaces`);
  }
  return { username, N };
}

/** Reads one line from a terminal with echo off. */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let value = '';
    const done = (error?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener('data', onData);
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(value);
    };
    const onData = (text: string) => {
      for (const char of text) {
        if (char === '\r' || char === '\n' || char === '\u0004') return done();
        if (char === '\u0003') return done(new UsageError('cancelled'));
        if (char === '\u007f' || char === '\b') value = value.slice(0, -1);
        else value += char;
      }
    };
    stdin.on('data', onData);
  });
}

async function readPiped(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  const newline = text.search(/\r?\n/);
  return newline === -1 ? text : text.slice(0, newline);
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  const { username, N } = parseArgs(argv);
  const password = process.stdin.isTTY ? await promptHidden(`Password for ${username}: `) : await readPiped();
  if (password === '') throw new UsageError('the password read from stdin is empty');
  process.stdout.write(`${username}:${await hashPassword(password, { N })}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error) => {
    process.stderr.write(`hash-password: ${error.message}\n${error instanceof UsageError ? 'Run with --help for usage.\n' : ''}`);
    process.exitCode = error instanceof UsageError ? 2 : 1;
  },
);
