import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BUFFER_FLUSH_BYTES, createLogger, isRedactedField } from '../src/ops/logger';
import { LineSink } from './ops-support';

const FIXED_TIME = new Date('2026-01-02T03:04:05.678Z');

function logger(level: 'debug' | 'info' | 'warn' | 'error' = 'debug', base?: Record<string, unknown>) {
  const sink = new LineSink();
  return { sink, log: createLogger({ level, stream: sink, base, now: () => FIXED_TIME }) };
}

describe('createLogger', () => {
  it('writes one JSON object per line with time, level, msg and the fields', () => {
    const { sink, log } = logger('debug', { service: 'smtp-gateway' });
    log.info('message relayed', { id: 'abc', bytes: 1234, outcome: 'relayed' });
    log.warn('second line');
    expect(sink.raw.endsWith('\n')).toBe(true);
    expect(sink.raw.split('\n')).toHaveLength(3);
    expect(sink.lines).toEqual([
      { time: '2026-01-02T03:04:05.678Z', level: 'info', msg: 'message relayed', service: 'smtp-gateway', id: 'abc', bytes: 1234, outcome: 'relayed' },
      { time: '2026-01-02T03:04:05.678Z', level: 'warn', msg: 'second line', service: 'smtp-gateway' },
    ]);
    // time, level and msg come first so a human reading raw lines sees them at once.
    expect(sink.raw.startsWith('{"time":"2026-01-02T03:04:05.678Z","level":"info","msg":"message relayed"')).toBe(true);
  });

  it('uses the real clock by default', () => {
    const sink = new LineSink();
    const before = Date.now();
    createLogger({ level: 'info', stream: sink }).info('now');
    const time = Date.parse(sink.lines[0].time as string);
    expect(time).toBeGreaterThanOrEqual(before);
    expect(time).toBeLessThanOrEqual(Date.now());
  });

  it('drops lines below its level', () => {
    const { sink, log } = logger('warn');
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    expect(sink.lines.map((line) => line.level)).toEqual(['warn', 'error']);
    expect(log.isLevelEnabled('info')).toBe(false);
    expect(log.isLevelEnabled('error')).toBe(true);
  });

  it('refuses an unknown level with a message naming it', () => {
    expect(() => createLogger({ level: 'verbose' as never })).toThrow(/level "verbose" is not one of debug, info, warn, error/);
  });

  it('child() adds fields to every line, and a call’s own fields win', () => {
    const { sink, log } = logger('info', { service: 'gw' });
    const session = log.child({ session: 's1', client: '127.0.0.1' });
    const txn = session.child({ txn: 't1' });
    txn.info('a', { client: '10.0.0.1' });
    session.info('b');
    log.info('c');
    expect(sink.lines).toEqual([
      expect.objectContaining({ msg: 'a', service: 'gw', session: 's1', txn: 't1', client: '10.0.0.1' }),
      expect.objectContaining({ msg: 'b', service: 'gw', session: 's1', client: '127.0.0.1' }),
      { time: FIXED_TIME.toISOString(), level: 'info', msg: 'c', service: 'gw' },
    ]);
    expect(sink.lines[1]).not.toHaveProperty('txn');
  });

  it('never lets a field overwrite time, level or msg', () => {
    const { sink, log } = logger();
    log.info('real', { msg: 'forged', level: 'error', time: 'yesterday' });
    expect(sink.lines[0]).toMatchObject({
      level: 'info',
      msg: 'real',
      time: FIXED_TIME.toISOString(),
      'field.msg': 'forged',
      'field.level': 'error',
      'field.time': 'yesterday',
    });
  });

  describe('redaction', () => {
    const SECRET = 'hunter2-SECRET-VALUE';

    it('decides by the name every time, not only the first (the decision is remembered per name)', () => {
      const { sink, log } = logger('debug');
      for (let i = 0; i < 3; i++) log.info('again', { password: SECRET, passwordPolicy: 'long', user: 'app1' });
      expect(sink.raw).not.toContain(SECRET);
      expect(sink.lines.map((line) => [line.password, line.passwordPolicy, line.user])).toEqual(Array(3).fill([undefined, 'long', 'app1']));
    });

    it('never writes password, pass, secret, authorization or body fields, at any depth', () => {
      const { sink, log } = logger('debug', { password: SECRET });
      log.info('login', {
        user: 'app1',
        pass: SECRET,
        password: SECRET,
        secret: SECRET,
        authorization: `Basic ${SECRET}`,
        body: `Subject: hi\r\n\r\n${SECRET}`,
        auth: { user: 'app1', pass: SECRET, nested: [{ Password: SECRET, ok: 1 }] },
        headers: { Authorization: SECRET, 'X-Authorization': SECRET, cookie: SECRET },
        upstream_password: SECRET,
        clientSecret: SECRET,
        accessToken: SECRET,
        messageBody: SECRET,
        credentials: { key: SECRET },
      });
      log.child({ secret: SECRET }).error('child', { token: SECRET });
      expect(sink.raw).not.toContain(SECRET);
      const [first, second] = sink.lines;
      expect(first).toEqual({
        time: FIXED_TIME.toISOString(),
        level: 'info',
        msg: 'login',
        user: 'app1',
        auth: { user: 'app1', nested: [{ ok: 1 }] },
        headers: {},
      });
      expect(second).toEqual({ time: FIXED_TIME.toISOString(), level: 'error', msg: 'child' });
    });

    it('keeps fields that only look alike', () => {
      for (const name of ['passwordFile', 'user', 'bodyBytes', 'passed', 'secretName', 'authMethod']) {
        expect(isRedactedField(name), name).toBe(false);
      }
      for (const name of ['password', 'PASS', 'Secret', 'authorization', 'body', 'smtp-password', 'apiToken']) {
        expect(isRedactedField(name), name).toBe(true);
      }
    });

    it('writes Buffers as their length, never their content', () => {
      const { sink, log } = logger();
      log.info('chunk', { chunk: Buffer.from(`DATA ${SECRET}`), bytes: new Uint8Array(3) });
      expect(sink.raw).not.toContain(SECRET);
      expect(sink.lines[0]).toMatchObject({ chunk: '[Buffer 25 bytes]', bytes: '[Uint8Array 3 bytes]' });
    });
  });

  describe('never throws', () => {
    it('on circular objects, bigints and other values JSON cannot hold', () => {
      const { sink, log } = logger();
      const loop: Record<string, unknown> = { name: 'loop' };
      loop.self = loop;
      loop.list = [loop, { back: loop }];
      const shared = { n: 1 };
      log.info('odd values', {
        loop,
        big: 2n ** 70n,
        nan: Number.NaN,
        inf: Number.POSITIVE_INFINITY,
        sym: Symbol('s'),
        fn: function handler() {},
        undef: undefined,
        date: new Date(0),
        map: new Map<unknown, unknown>([['k', 1n]]),
        set: new Set([1, 2]),
        twice: [shared, shared],
      });
      expect(sink.lines[0]).toMatchObject({
        loop: { name: 'loop', self: '[Circular]', list: ['[Circular]', { back: '[Circular]' }] },
        big: '1180591620717411303424',
        nan: 'NaN',
        inf: 'Infinity',
        sym: 'Symbol(s)',
        fn: '[Function handler]',
        date: '1970-01-01T00:00:00.000Z',
        map: { k: '1' },
        set: [1, 2],
        // The same object twice is not a cycle.
        twice: [{ n: 1 }, { n: 1 }],
      });
      expect(sink.lines[0]).not.toHaveProperty('undef');
    });

    it('on getters that throw and on very deep objects', () => {
      const { sink, log } = logger();
      const hostile = Object.defineProperty({}, 'boom', {
        enumerable: true,
        get() {
          throw new Error('getter exploded');
        },
      });
      let deep: Record<string, unknown> = { leaf: true };
      for (let i = 0; i < 100; i++) deep = { deep };
      log.info('hostile', { hostile, deep });
      expect(sink.lines[0].hostile).toEqual({ boom: '[getter threw: getter exploded]' });
      expect(JSON.stringify(sink.lines[0].deep)).toContain('[Truncated]');
    });

    it('writes Errors with name, message, code, stack and cause', () => {
      const { sink, log } = logger();
      const cause = new Error('socket hang up');
      const err = Object.assign(new Error('upstream failed', { cause }), { code: 'ECONNRESET', responseCode: 421 });
      log.error('relay failed', { err });
      expect(sink.lines[0].err).toMatchObject({
        name: 'Error',
        message: 'upstream failed',
        code: 'ECONNRESET',
        responseCode: 421,
        cause: { name: 'Error', message: 'socket hang up' },
      });
      expect((sink.lines[0].err as { stack: string }).stack).toContain('ops-logger.test.ts');
    });

    it('when the stream throws', () => {
      const broken = new Writable({
        write() {
          throw new Error('EPIPE');
        },
      });
      broken.write = () => {
        throw new Error('EPIPE');
      };
      const log = createLogger({ level: 'debug', stream: broken });
      expect(() => log.error('still fine', { a: 1 })).not.toThrow();
    });
  });
});

describe('createLogger({ buffered: true })', () => {
  const LOGGER_MODULE = resolve(__dirname, '../src/ops/logger.ts');
  const nextTurn = () => new Promise((done) => setImmediate(done));

  it('writes the lines of one event-loop turn in one write, in the order they were logged, children included', async () => {
    const sink = new LineSink();
    const log = createLogger({ level: 'info', stream: sink, buffered: true, now: () => FIXED_TIME });
    const child = log.child({ session: 's1' });
    log.info('first');
    child.warn('second');
    log.debug('dropped');
    log.error('third', { n: 3 });
    expect(sink.text).toEqual([]);
    await nextTurn();
    expect(sink.text).toHaveLength(1);
    expect(sink.lines).toEqual([
      { time: FIXED_TIME.toISOString(), level: 'info', msg: 'first' },
      { time: FIXED_TIME.toISOString(), level: 'warn', msg: 'second', session: 's1' },
      { time: FIXED_TIME.toISOString(), level: 'error', msg: 'third', n: 3 },
    ]);
    child.info('next turn');
    await nextTurn();
    expect(sink.text).toHaveLength(2);
    expect(sink.lines.map((line) => line.msg)).toEqual(['first', 'second', 'third', 'next turn']);
  });

  it('writes at once when BUFFER_FLUSH_BYTES are waiting, without waiting for the turn to end', () => {
    const sink = new LineSink();
    const log = createLogger({ level: 'info', stream: sink, buffered: true });
    const filler = 'x'.repeat(1000);
    let logged = 0;
    while (sink.text.length === 0) {
      log.info('filler', { n: logged++, filler });
      expect(logged).toBeLessThan(BUFFER_FLUSH_BYTES / 1000 + 2);
    }
    expect(logged).toBeGreaterThan(BUFFER_FLUSH_BYTES / 1100);
    expect(sink.lines.map((line) => line.n)).toEqual([...Array(logged).keys()]);
  });

  it('survives a stream that throws, like the unbuffered logger', async () => {
    const broken = new Writable({
      write() {
        throw new Error('disk gone');
      },
    });
    const log = createLogger({ level: 'info', stream: broken, buffered: true });
    expect(() => log.info('still fine')).not.toThrow();
    await nextTurn();
    expect(() => log.info('still fine after')).not.toThrow();
  });

  /** Runs `script` in a fresh node process with `log` a buffered logger on stdout (a pipe). */
  function runWithBufferedStdout(script: string) {
    const setup = `const log = require(${JSON.stringify(LOGGER_MODULE)}).createLogger({ level: 'info', buffered: true });`;
    return spawnSync(process.execPath, ['--import', 'tsx', '-e', `${setup}\n${script}`], { encoding: 'utf8', timeout: 30_000 });
  }

  it('writes every line logged right before process.exit(), in order', () => {
    const result = runWithBufferedStdout(`
      const child = log.child({ side: 'child' });
      for (let n = 0; n < 200; n++) (n % 2 ? child : log).info('line', { n });
      log.error('last words');
      process.exit(3);
    `);
    expect(result.status).toBe(3);
    const lines = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toHaveLength(201);
    expect(lines.slice(0, 200).map((line) => line.n)).toEqual([...Array(200).keys()]);
    expect(lines[1]).toMatchObject({ side: 'child', n: 1 });
    expect(lines[200]).toMatchObject({ level: 'error', msg: 'last words' });
  });

  it('writes the lines logged before an uncaught exception ends the process', () => {
    const result = runWithBufferedStdout(`
      log.info('before the crash');
      setImmediate(() => { log.warn('in the crashing turn'); throw new Error('boom'); });
    `);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('boom');
    expect(result.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { msg: string }).msg)).toEqual(['before the crash', 'in the crashing turn']);
  });
});
