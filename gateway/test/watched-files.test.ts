/**
 * watchParsed, the read → parse → keep-last-good shape of every reloaded file
 * (users, applications, certificate, upstream credentials): what a start-up
 * failure, an unreadable file, a bad file and a failed apply each leave in
 * force, and what they report.
 */
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchParsed, type ParsedWatch, type WatchParsedOptions } from '../src/smtp/watched-files';

class NumberFileError extends Error {}

const watches: Array<ParsedWatch<number>> = [];
afterEach(() => watches.splice(0).forEach((watch) => watch.close()));

async function numberFile(text: string): Promise<string> {
  const file = join(await mkdtemp(join(tmpdir(), 'smtp-gateway-watched-')), 'number');
  await writeFile(file, text);
  return file;
}

/** A file holding one integer; `onChange` may refuse a value by throwing. */
function watchNumber(file: string, overrides: Partial<WatchParsedOptions<number, NumberFileError>> = {}) {
  const errors: NumberFileError[] = [];
  const changes: number[] = [];
  const watch = watchParsed<number, NumberFileError>({
    files: [file],
    parse: ([content]) => {
      const value = Number(content.toString('utf8').trim());
      if (!Number.isInteger(value)) throw new NumberFileError(`${file}: expected an integer, got ${JSON.stringify(content.toString('utf8'))}`);
      return value;
    },
    error: (message) => new NumberFileError(message),
    unreadable: (path, cause) => `Cannot read number file ${path}: ${cause.message}`,
    keeps: 'number',
    onChange: (value) => changes.push(value),
    onError: (error) => errors.push(error),
    // only check() reloads here, so each step is deterministic
    pollMs: 600_000,
    ...overrides,
  });
  watches.push(watch);
  return { watch, errors, changes };
}

describe('watchParsed', () => {
  it('refuses to start on a missing or unparsable file, with the module error naming the file', async () => {
    expect(() => watchNumber('/nonexistent/number')).toThrow(NumberFileError);
    expect(() => watchNumber('/nonexistent/number')).toThrow(/^Cannot read number file \/nonexistent\/number: ENOENT/);
    const bad = await numberFile('seven\n');
    expect(() => watchNumber(bad)).toThrow(/expected an integer, got "seven\\n"/);
  });

  it('takes a valid change, then keeps the last good value through a bad, a missing and a refused file', async () => {
    const file = await numberFile('1\n');
    let refuse = false;
    const changes: number[] = [];
    const { watch, errors } = watchNumber(file, {
      onChange: (value) => {
        if (refuse) throw new Error(`listener refused ${value}`);
        changes.push(value);
      },
    });
    expect(watch.current).toBe(1);

    await writeFile(file, '2\n');
    await watch.check();
    expect(watch.current).toBe(2);
    expect(changes).toEqual([2]);

    await writeFile(file, 'two\n');
    await watch.check();
    expect(watch.current).toBe(2);
    expect(errors.at(-1)).toBeInstanceOf(NumberFileError);
    expect(errors.at(-1)?.message).toMatch(/expected an integer, got "two\\n"; keeping the previous number$/);

    await rm(file);
    await watch.check();
    expect(watch.current).toBe(2);
    expect(errors.at(-1)?.message).toMatch(new RegExp(`^Cannot read number file ${file}: ENOENT.*; keeping the previous number$`));

    refuse = true;
    await writeFile(file, '3\n');
    await watch.check();
    expect(watch.current).toBe(2);
    expect(errors.at(-1)).toBeInstanceOf(NumberFileError);
    expect(errors.at(-1)?.message).toBe('listener refused 3; keeping the previous number');
    expect(changes).toEqual([2]);
    expect(errors).toHaveLength(3);
  });

  it('check() asked for during a running check resolves only after a check that saw the newest file', async () => {
    const file = await numberFile('0\n');
    let during: Promise<void> | undefined;
    const { watch, changes } = watchNumber(file, {
      onChange: (value) => {
        changes.push(value);
        // the file changes again while the check that read 1 is still applying it
        if (value === 1) {
          writeFileSync(file, '2\n');
          during = watch.check();
        }
      },
    });
    await writeFile(file, '1\n');
    await watch.check();
    await during;
    expect(watch.current).toBe(2);
    expect(changes).toEqual([1, 2]);
  });

  it('reports an unchanged file neither as a change nor as an error', async () => {
    const file = await numberFile('5\n');
    const { watch, errors, changes } = watchNumber(file);
    await writeFile(file, '5\n');
    await watch.check();
    expect(changes).toEqual([]);
    expect(errors).toEqual([]);
  });
});
