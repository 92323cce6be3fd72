/**
 * Throw-away TLS material for tests: a private CA and a server certificate for
 * localhost, 127.0.0.1 and ::1 signed by it, so suites can run real TLS over
 * loopback with certificate verification on (never smtp-server's demo cert).
 * Made with the `openssl` command and cached per process, because RSA key
 * generation costs real time on a 2-core machine.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCertificates {
  /** Folder holding the files below. */
  readonly dir: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface MakeCertificateOptions {
  /** Common name of the server certificate. @default 'localhost' */
  readonly commonName?: string;
  /** Subject alternative names. @default ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1'] */
  readonly altNames?: readonly string[];
}

const cache = new Map<string, Promise<TestCertificates>>();

/**
 * A CA and a server certificate signed by it in `dir` (a new temporary folder
 * when omitted). Calls with the same `dir` (or none) share one result per process.
 */
export function makeTestCertificates(dir?: string, options: MakeCertificateOptions = {}): Promise<TestCertificates> {
  const cacheKey = JSON.stringify([dir ?? '', options.commonName ?? '', options.altNames ?? []]);
  let pending = cache.get(cacheKey);
  if (!pending) {
    pending = generate(dir, options);
    pending.catch(() => cache.delete(cacheKey));
    cache.set(cacheKey, pending);
  }
  return pending;
}

/**
 * A second server certificate signed by the same CA as `base` but with another
 * common name, written to new files in a new folder (not cached): what a test of
 * certificate rotation swaps in.
 */
export async function makeServerCertificate(
  base: TestCertificates,
  options: MakeCertificateOptions & { dir?: string } = {},
): Promise<Pick<TestCertificates, 'dir' | 'certFile' | 'keyFile' | 'cert' | 'key'>> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'smtp-gateway-cert-')));
  const files = await issueServerCertificate(dir, join(base.dir, 'ca.key'), base.caFile, options);
  return { dir, ...files };
}

async function generate(dir: string | undefined, options: MakeCertificateOptions): Promise<TestCertificates> {
  const target = dir ?? (await mkdtemp(join(tmpdir(), 'smtp-gateway-certs-')));
  const caKeyFile = join(target, 'ca.key');
  const caFile = join(target, 'ca.crt');
  await openssl([
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-subj', '/CN=smtp-gateway test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', caKeyFile, '-out', caFile,
  ]);
  const server = await issueServerCertificate(target, caKeyFile, caFile, options);
  return { dir: target, caFile, ca: await readFile(caFile), ...server };
}

async function issueServerCertificate(
  dir: string,
  caKeyFile: string,
  caFile: string,
  options: MakeCertificateOptions,
): Promise<{ certFile: string; keyFile: string; cert: Buffer; key: Buffer }> {
  const commonName = options.commonName ?? 'localhost';
  const altNames = options.altNames ?? ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1'];
  const keyFile = join(dir, 'server.key');
  const csrFile = join(dir, 'server.csr');
  const certFile = join(dir, 'server.crt');
  const extFile = join(dir, 'server.ext');
  await writeFile(
    extFile,
    [
      `subjectAltName=${altNames.join(',')}`,
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      '',
    ].join('\n'),
  );
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-subj', `/CN=${commonName}`, '-keyout', keyFile, '-out', csrFile]);
  await openssl([
    'x509', '-req', '-sha256', '-days', '2', '-in', csrFile,
    '-CA', caFile, '-CAkey', caKeyFile, '-CAcreateserial', '-extfile', extFile, '-out', certFile,
  ]);
  return { certFile, keyFile, cert: await readFile(certFile), key: await readFile(keyFile) };
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 20_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed while making test certificates: ${stderr.trim() || String(error)}`);
  }
}
