/**
 * `make synth`: writes charts/smtp-gateway (or the folder given as the first
 * argument). Files synth no longer produces are removed; the hand-written
 * helm-unittest suites in tests/ are left alone.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { chartFiles } from './chart-files';

const HAND_WRITTEN = /^tests(\/|$)/;

function listFiles(dir: string, root = dir): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name), root) : [relative(root, join(dir, e.name))]));
}

export function writeChart(outDir: string): string[] {
  const files = chartFiles();
  for (const stale of listFiles(outDir).filter((f) => !HAND_WRITTEN.test(f) && !files.has(f))) rmSync(join(outDir, stale));
  for (const [file, content] of files) {
    mkdirSync(dirname(join(outDir, file)), { recursive: true });
    writeFileSync(join(outDir, file), content);
  }
  return [...files.keys()];
}

if (require.main === module) {
  const outDir = resolve(process.argv[2] ?? join(__dirname, '..', 'charts', 'smtp-gateway'));
  const written = writeChart(outDir);
  console.log(`synth: wrote ${written.length} files to ${relative(process.cwd(), outDir) || '.'}`);
}
