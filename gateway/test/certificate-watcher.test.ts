import { once } from 'node:events';
import { copyFile, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { SMTPServer } from 'smtp-server';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CertificateError, watchCertificate, type CertificatePair, type CertificateWatch } from '../src/smtp/certificate-watcher';
import { makeServerCertificate, makeTestCertificates, type TestCertificates } from '../../testkit/certs';
import { eventually } from '../../testkit/eventually';
import { makeSecretVolume } from '../../testkit/secret-volume';

type ServerCert = Awaited<ReturnType<typeof makeServerCertificate>>;

let base: TestCertificates;
let rotated: ServerCert;
let third: ServerCert;
beforeAll(async () => {
  base = await makeTestCertificates();
  rotated = await makeServerCertificate(base, { commonName: 'rotated.localhost' });
  third = await makeServerCertificate(base, { commonName: 'third.localhost' });
});

/** Common name of the certificate a verifying TLS client is served on implicit TLS. */
async function servedName(port: number): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: base.ca, servername: 'localhost', checkServerIdentity: () => undefined });
  try {
    await once(socket, 'secureConnect');
    expect(socket.authorized).toBe(true);
    return String(socket.getPeerCertificate().subject.CN);
  } finally {
    socket.destroy();
  }
}

/** Common name served after STARTTLS on a plain SMTP listener. */
async function servedNameAfterStarttls(port: number): Promise<string> {
  const raw = net.connect(port, '127.0.0.1');
  let text = '';
  const onData = (chunk: Buffer) => (text += chunk.toString());
  raw.on('data', onData);
  try {
    await eventually(() => /^220 /m.test(text), 'the greeting');
    raw.write('EHLO client.example\r\n');
    await eventually(() => /^250 /m.test(text), 'the EHLO reply');
    raw.write('STARTTLS\r\n');
    await eventually(() => /^220 .*\r\n/m.test(text.slice(text.indexOf('250 '))), 'the STARTTLS reply');
    raw.removeListener('data', onData);
    const secure = tls.connect({ socket: raw, ca: base.ca, servername: 'localhost', checkServerIdentity: () => undefined });
    await once(secure, 'secureConnect');
    expect(secure.authorized).toBe(true);
    const name = String(secure.getPeerCertificate().subject.CN);
    secure.destroy();
    return name;
  } finally {
    raw.destroy();
  }
}

/** The base pair copied to plain files in a new folder (no symlinks). */
async function basePairInPlainFiles(): Promise<{ certFile: string; keyFile: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'smtp-gateway-tls-'));
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  await copyFile(base.certFile, certFile);
  await copyFile(base.keyFile, keyFile);
  return { certFile, keyFile };
}

describe('watchCertificate', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    while (cleanups.length) cleanups.pop()!();
  });

  function watch(options: Omit<Parameters<typeof watchCertificate>[0], 'onError'> & { onError?: (error: Error) => void }): CertificateWatch {
    const watcher = watchCertificate({ onError: () => undefined, ...options });
    cleanups.push(() => watcher.close());
    return watcher;
  }

  async function smtpServer(options: ConstructorParameters<typeof SMTPServer>[0]): Promise<{ server: SMTPServer; port: number }> {
    const server = new SMTPServer({ logger: false, authOptional: true, ...options });
    // probes hang up right after the handshake, which smtp-server reports as an error
    server.on('error', () => undefined);
    server.listen(0, '127.0.0.1');
    await once(server.server, 'listening');
    cleanups.push(() => server.close());
    return { server, port: (server.server.address() as AddressInfo).port };
  }

  it('loads the pair synchronously and refuses a missing or broken one with a clear error', async () => {
    const watcher = watch({ certFile: base.certFile, keyFile: base.keyFile, onChange: () => undefined });
    expect(watcher.current.cert.equals(base.cert)).toBe(true);
    expect(watcher.current.key.equals(base.key)).toBe(true);

    expect(() => watchCertificate({ certFile: '/nonexistent/tls.crt', keyFile: base.keyFile, onChange() {}, onError() {} })).toThrow(
      /Cannot read TLS certificate \/nonexistent\/tls.crt: ENOENT/,
    );
    expect(() => watchCertificate({ certFile: base.certFile, keyFile: '/nonexistent/tls.key', onChange() {}, onError() {} })).toThrow(CertificateError);
    // a cert with someone else's key
    expect(() => watchCertificate({ certFile: rotated.certFile, keyFile: base.keyFile, onChange() {}, onError() {} })).toThrow(
      new RegExp(`Certificate ${rotated.certFile} and key ${base.keyFile} are not a usable TLS pair: .*key values mismatch`),
    );
    const junk = join(await mkdtemp(join(tmpdir(), 'smtp-gateway-junk-')), 'tls.crt');
    await writeFile(junk, 'not a certificate');
    expect(() => watchCertificate({ certFile: junk, keyFile: base.keyFile, onChange() {}, onError() {} })).toThrow(/not a usable TLS pair/);
  });

  /** A watch on a Secret volume holding the base pair, recording what it reports. */
  async function watchVolume(onChange: (pair: CertificatePair) => void = () => undefined) {
    const volume = await makeSecretVolume({ 'tls.crt': base.cert, 'tls.key': base.key });
    const changed: Buffer[] = [];
    const errors: Error[] = [];
    const watcher = watch({
      certFile: volume.path('tls.crt'),
      keyFile: volume.path('tls.key'),
      pollMs: 60_000,
      onChange: (pair) => {
        changed.push(pair.cert);
        onChange(pair);
      },
      onError: (error) => errors.push(error),
    });
    return { volume, watcher, changed, errors };
  }

  it('serves the new certificate to TLS clients after a Kubernetes Secret update (implicit TLS and STARTTLS)', async () => {
    let servers: SMTPServer[] = [];
    const { volume, watcher, changed: changes } = await watchVolume((pair) => {
      for (const server of servers) server.updateSecureContext(pair);
    });
    const implicit = await smtpServer({ secure: true, key: watcher.current.key, cert: watcher.current.cert });
    const starttls = await smtpServer({ key: watcher.current.key, cert: watcher.current.cert });
    servers = [implicit.server, starttls.server];
    expect(await servedName(implicit.port)).toBe('localhost');
    expect(await servedNameAfterStarttls(starttls.port)).toBe('localhost');

    await volume.update({ 'tls.crt': rotated.cert, 'tls.key': rotated.key });
    await eventually(async () => (await servedName(implicit.port)) === 'rotated.localhost', 'the rotated certificate');
    expect(await servedNameAfterStarttls(starttls.port)).toBe('rotated.localhost');
    expect(watcher.current.cert.equals(rotated.cert)).toBe(true);
    expect(changes).toHaveLength(1);
  });

  it('keeps the previous certificate when the new pair does not match, and recovers when it is fixed', async () => {
    const { volume, watcher, changed, errors } = await watchVolume();
    await volume.update({ 'tls.crt': rotated.cert, 'tls.key': base.key });
    await eventually(() => errors.length > 0, 'the error');
    expect(errors[0]).toBeInstanceOf(CertificateError);
    expect(errors[0].message).toMatch(/are not a usable TLS pair: .*; keeping the previous certificate$/);
    expect(changed).toEqual([]);
    expect(watcher.current.cert.equals(base.cert)).toBe(true);

    await volume.update({ 'tls.crt': rotated.cert, 'tls.key': rotated.key });
    await eventually(() => changed.length === 1, 'the fixed pair');
    expect(watcher.current.cert.equals(rotated.cert)).toBe(true);
  });

  it('sees files rewritten in place one after the other, and falls back to polling', async () => {
    const { certFile, keyFile } = await basePairInPlainFiles();
    const changed: Buffer[] = [];
    const watcher = watch({ certFile, keyFile, onChange: (pair) => changed.push(pair.cert) });
    // a cert first and its key a moment later, as a naive copy does
    await writeFile(certFile, rotated.cert);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await writeFile(keyFile, rotated.key);
    await eventually(() => watcher.current.cert.equals(rotated.cert), 'the in-place rewrite');
    expect(changed.length).toBeGreaterThanOrEqual(1);

    // the poll alone: a watcher whose folder events never arrive (a file reached through a symlink elsewhere)
    const linkDir = await mkdtemp(join(tmpdir(), 'smtp-gateway-tls-link-'));
    await symlink(certFile, join(linkDir, 'tls.crt'));
    await symlink(keyFile, join(linkDir, 'tls.key'));
    const polled = watch({ certFile: join(linkDir, 'tls.crt'), keyFile: join(linkDir, 'tls.key'), pollMs: 100, onChange: () => undefined });
    await copyFile(third.certFile, certFile);
    await copyFile(third.keyFile, keyFile);
    await eventually(() => polled.current.cert.equals(third.cert), 'the polled change');
  });

  it('reports an onChange that throws and keeps the pair it could not apply from current', async () => {
    const { certFile, keyFile } = await basePairInPlainFiles();
    const errors: Error[] = [];
    const watcher = watch({
      certFile,
      keyFile,
      pollMs: 60_000,
      onChange: () => {
        throw new Error('listener gone');
      },
      onError: (error) => errors.push(error),
    });
    await writeFile(certFile, rotated.cert);
    await writeFile(keyFile, rotated.key);
    await watcher.check();
    expect(errors.map((error) => error.message)).toContain(`Applying the new certificate ${certFile} failed: listener gone; keeping the previous certificate`);
    expect(watcher.current.cert.equals(base.cert)).toBe(true);
  });

  it('check() reloads on demand and close() stops watching', async () => {
    const { certFile, keyFile } = await basePairInPlainFiles();
    const changed: Buffer[] = [];
    const watcher = watchCertificate({ certFile, keyFile, pollMs: 60_000, onChange: (pair) => changed.push(pair.cert), onError: () => undefined });
    await writeFile(certFile, rotated.cert);
    await writeFile(keyFile, rotated.key);
    await watcher.check();
    expect(watcher.current.cert.equals(rotated.cert)).toBe(true);
    watcher.close();
    await writeFile(certFile, third.cert);
    await writeFile(keyFile, third.key);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(watcher.current.cert.equals(rotated.cert)).toBe(true);
    expect(changed.length).toBeGreaterThanOrEqual(1);
    expect(changed.some((cert) => cert.equals(third.cert))).toBe(false);
  });
});
