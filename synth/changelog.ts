/**
 * CHANGELOG.md (Keep a Changelog) read for the chart: the entries of one
 * version as Artifact Hub's `artifacthub.io/changes` kinds, so the chart page
 * and the changelog cannot disagree.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const CHANGELOG = join(__dirname, '..', 'CHANGELOG.md');

/** Keep a Changelog section → Artifact Hub change kind. */
const KINDS: Record<string, string> = {
  Added: 'added',
  Changed: 'changed',
  Deprecated: 'deprecated',
  Removed: 'removed',
  Fixed: 'fixed',
  Security: 'security',
};

export interface Change {
  readonly kind: string;
  readonly description: string;
}

/** The changes listed under `## [version]`; an error names the version when it has no section or no entry. */
export function changesOf(version: string, text = readFileSync(CHANGELOG, 'utf8')): Change[] {
  const sections = text.split(/^## /m).slice(1);
  const section = sections.find((s) => s.startsWith(`[${version}]`));
  if (!section) throw new Error(`CHANGELOG.md has no "## [${version}]" section for the chart version ${version}; add one`);
  const changes: Change[] = [];
  let kind: string | undefined;
  for (const line of section.split('\n').slice(1)) {
    const heading = /^### (\w+)/.exec(line);
    if (heading) {
      kind = KINDS[heading[1]];
      if (!kind) throw new Error(`CHANGELOG.md [${version}]: "### ${heading[1]}" is not a Keep a Changelog section (${Object.keys(KINDS).join(', ')})`);
      continue;
    }
    const item = /^- (.+)$/.exec(line);
    if (item) {
      if (!kind) throw new Error(`CHANGELOG.md [${version}]: "${line}" stands under no ### section`);
      changes.push({ kind, description: item[1].replace(/`/g, '') });
    } else if (/^\s+\S/.test(line) && changes.length > 0) {
      const last = changes.pop()!;
      changes.push({ ...last, description: `${last.description} ${line.trim().replace(/`/g, '')}` });
    }
  }
  if (changes.length === 0) throw new Error(`CHANGELOG.md [${version}] lists no change`);
  return changes;
}
