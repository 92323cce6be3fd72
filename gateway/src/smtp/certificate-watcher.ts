/**
 * Keeps the listeners' TLS certificate current. cert-manager renews certificates
 * and Kubernetes swaps the mounted Secret files in place; without a reload the
 * gateway would serve the old certificate until it expires. The pair is loaded
 * once synchronously at start-up (a missing or broken pair stops the process
 * with a clear error), then watched; each new pair is checked with
 * tls.createSecureContext before it is handed on (typically to
 * `SMTPServer.updateSecureContext`), and a bad or half-written pair is reported
 * while the previous one stays in use.
 */
import { createSecureContext } from 'node:tls';
import { watchParsed, type ParsedWatch, type ReloadOptions } from './watched-files';

export interface CertificatePair {
  key: Buffer;
  cert: Buffer;
}

export interface WatchCertificateOptions extends ReloadOptions<CertificatePair, CertificateError> {
  /** PEM certificate chain. */
  readonly certFile: string;
  /** PEM private key. */
  readonly keyFile: string;
  /** Wait this long after a file event, so a cert and key written one after the other arrive together. @default 200 */
  readonly debounceMs?: number;
}

export type CertificateWatch = ParsedWatch<CertificatePair>;

/** A certificate or key that cannot be read or used; names both files. */
export class CertificateError extends Error {
  readonly code = 'CERTIFICATE';
  constructor(message: string) {
    super(message);
    this.name = 'CertificateError';
  }
}

/** Throws a CertificateError unless key and cert form a usable TLS pair. */
export function validateCertificatePair(pair: CertificatePair, certFile: string, keyFile: string): void {
  try {
    createSecureContext({ key: pair.key, cert: pair.cert });
  } catch (error) {
    throw new CertificateError(`Certificate ${certFile} and key ${keyFile} are not a usable TLS pair: ${(error as Error).message}`);
  }
}

export function watchCertificate(options: WatchCertificateOptions): CertificateWatch {
  const { certFile, keyFile, onChange } = options;
  return watchParsed({
    files: [certFile, keyFile],
    parse: ([cert, key]) => {
      const pair = { cert, key };
      validateCertificatePair(pair, certFile, keyFile);
      return pair;
    },
    error: (message) => new CertificateError(message),
    unreadable: (file, cause) => `Cannot read TLS ${file === certFile ? 'certificate' : 'key'} ${file}: ${cause.message}`,
    keeps: 'certificate',
    onChange: (pair) => {
      try {
        onChange(pair);
      } catch (error) {
        throw new CertificateError(`Applying the new certificate ${certFile} failed: ${(error as Error).message}`);
      }
    },
    onError: options.onError,
    pollMs: options.pollMs,
    debounceMs: options.debounceMs ?? 200,
  });
}
