/**
 * The gateway's version, read from the package.json it ships with, for the
 * build-info metric and the start-up log line. Found by walking up from this
 * file because the depth differs between the sources (tsx) and dist/ (node).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const PACKAGE_NAME = 'smtp-gateway';
export const UNKNOWN_VERSION = '0.0.0-unknown';

let cached: string | undefined;

export function gatewayVersion(): string {
  cached ??= findVersion(__dirname);
  return cached;
}

function findVersion(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === PACKAGE_NAME && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // No package.json here, or not ours: keep walking.
    }
    if (dirname(dir) === dir) return UNKNOWN_VERSION;
  }
}
