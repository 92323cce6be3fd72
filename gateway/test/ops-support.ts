/**
 * Small helpers the ops suites share: a log sink that keeps every line, and
 * running promtool on a text.
 */
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';

/** A writable stream that keeps what was written, split into lines. */
export class LineSink extends Writable {
  readonly text: string[] = [];

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.text.push(chunk.toString());
    callback();
  }

  get raw(): string {
    return this.text.join('');
  }

  /** Every line parsed as JSON; throws (failing the test) on a line that is not. */
  get lines(): Array<Record<string, unknown>> {
    return this.raw
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

export interface ToolResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs promtool with `args`, feeding `input` on stdin. */
export function promtool(args: string[], input?: string): ToolResult {
  const result = spawnSync('promtool', args, { input, encoding: 'utf8', timeout: 20_000 });
  if (result.error) throw new Error(`promtool ${args.join(' ')} could not run (is it installed? scripts/install-system-packages.sh): ${result.error.message}`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
