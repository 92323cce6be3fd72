/**
 * The repository says what it needs itself: no file points at documents a user of the repository does
 * not have (an architecture document or a planning "seed" outside it, a sibling folder beside the checkout, a path on the
 * machine it was written on). Every file git would commit is read; what it would cite is named.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/repo';

/** References to things outside the repository, each with what it stands for. */
const OUTSIDE: ReadonlyArray<[RegExp, string]> = [
  [/ARCHITECTURE\.md/, 'an architecture document the repository does not have'],
  [/\.\.\/shared\b/, 'a folder beside the repository'],
  [/(^|[\s'"`(])\/work\//, 'a path on the machine the file was written on'],
  [/aws-staging-vs-production(\.md)?/, 'the planning document the environments were taken from'],
  [/\bseed\/|\bthe seed\b|\bseed's\b/i, 'the planning "seed" the project started from'],
];

/** Where `text` points outside the repository, as "line: what". */
function outsidePointers(text: string): string[] {
  const found: string[] = [];
  text.split('\n').forEach((line, index) => {
    for (const [pattern, what] of OUTSIDE) if (pattern.test(line)) found.push(`${index + 1}: ${what}: ${line.trim()}`);
  });
  return found;
}

const SELF = 'scripts/test/self-contained.test.ts';

/** Relative link targets in a Markdown text (no scheme, no bare #anchor), without their #anchor. */
function relativeLinks(text: string): string[] {
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((match) => match[1].split('#')[0])
    .filter((target) => target && !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

function repositoryFiles(): string[] {
  const listed = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  return listed.stdout.split('\0').filter((file) => file && file !== SELF);
}

describe('the repository is self-contained', () => {
  it('no file points at a document or folder outside it', () => {
    const files = repositoryFiles();
    expect(files.length).toBeGreaterThan(100);
    const offending: string[] = [];
    for (const file of files) {
      let text: string;
      try {
        text = readFileSync(join(REPO_ROOT, file), 'utf8');
      } catch {
        continue; // deleted in the work tree, not yet committed
      }
      if (text.includes('\0')) continue; // binary
      offending.push(...outsidePointers(text).map((hit) => `${file}:${hit}`));
    }
    expect(offending).toEqual([]);
  });

  it('every relative link in a Markdown file names a file or folder of the repository', () => {
    const broken: string[] = [];
    for (const file of repositoryFiles().filter((name) => name.endsWith('.md'))) {
      if (!existsSync(join(REPO_ROOT, file))) continue;
      for (const target of relativeLinks(readFileSync(join(REPO_ROOT, file), 'utf8'))) {
        if (!existsSync(join(REPO_ROOT, dirname(file), target))) broken.push(`${file}: ${target}`);
      }
    }
    expect(broken).toEqual([]);
    expect(relativeLinks('[a](../x.md#y) [b](https://e.com/z) [c](#only) [d](mailto:a@b)')).toEqual(['../x.md']);
  });

  it('catches each kind of pointer (the check can fail), and leaves a random seed alone', () => {
    // assembled, so this file does not itself contain the pointers it checks for
    const architecture = ['ARCHITECTURE', 'md'].join('.');
    const sibling = ['..', 'shared', 'seed', 'aws-staging-vs-production.md'].join('/');
    expect(outsidePointers(`see ${architecture}, "The message path"`)).toHaveLength(1);
    expect(outsidePointers(`# as ${sibling} sets it out`)).toHaveLength(3);
    expect(outsidePointers("sized as the seed's production column")).toHaveLength(1);
    expect(outsidePointers('cp /work/main/.tools/bin/helm .')).toHaveLength(1);
    expect(outsidePointers('function seededRandom(seed: number) { /* replays from its seed */ }')).toEqual([]);
    expect(outsidePointers('a working tree in /tmp/work/x')).toEqual([]);
  });
});
