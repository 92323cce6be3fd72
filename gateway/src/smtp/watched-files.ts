/**
 * Notices when mounted files change, the way Kubernetes changes them: a Secret
 * or ConfigMap volume swaps a `..data` symlink to a new folder atomically, so
 * watching the file itself misses it (the watched inode never changes). This
 * watches each file's folder with fs.watch for a prompt reaction and also
 * re-reads the files on a timer, because fs.watch is best effort (network file
 * systems, overlay mounts, symlinks pointing elsewhere). Changes are detected by
 * content, so a touch without a change, or both cert and key swapped a moment
 * apart, produce one callback with the final contents. watchParsed() is what
 * the reloaded files (users, applications, certificate, upstream credentials)
 * use: read and parse at start-up, then keep the last good value.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

interface WatchFilesOptions {
  /** Files to watch; onChange receives their contents in this order. */
  readonly files: readonly string[];
  /** Contents as last loaded, so the first check only reports a real change. */
  readonly initial: readonly Buffer[];
  /** Called with the new contents of all files when any of them changed. */
  readonly onChange: (contents: Buffer[]) => void | Promise<void>;
  /** Called when the files cannot be read; the watch goes on. */
  readonly onError: (error: Error) => void;
  /** Re-read the files this often even without a file system event. @default 10000 */
  readonly pollMs?: number;
  /** Wait this long after an event for related writes to settle. @default 100 */
  readonly debounceMs?: number;
}

interface FileWatch {
  /** Re-reads the files now and reports a change; resolves when handled. */
  check(): Promise<void>;
  close(): void;
}

function watchFiles(options: WatchFilesOptions): FileWatch {
  const { files, onChange, onError } = options;
  const debounceMs = options.debounceMs ?? 100;
  let last = options.initial.slice();
  let closed = false;
  let debounce: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;

  const runCheck = async (): Promise<void> => {
    let contents: Buffer[];
    try {
      contents = await Promise.all(files.map((file) => readFile(file)));
    } catch (error) {
      if (!closed) onError(error as Error);
      return;
    }
    if (closed || contents.every((content, i) => last[i] !== undefined && content.equals(last[i]))) return;
    last = contents;
    try {
      await onChange(contents);
    } catch (error) {
      onError(error as Error);
    }
  };

  // One check at a time. A check asked for during one runs once more after it (however many were asked for),
  // and resolves only then: a caller that changed a file and awaits check() sees its own change.
  const check = (): Promise<void> => {
    if (closed) return Promise.resolve();
    if (running) {
      next ??= running.then(() => {
        next = undefined;
        return check();
      });
      return next;
    }
    running = runCheck().finally(() => {
      running = undefined;
    });
    return running;
  };

  const onEvent = () => {
    if (closed) return;
    clearTimeout(debounce);
    debounce = setTimeout(() => void check(), debounceMs);
    debounce.unref();
  };

  const watchers: FSWatcher[] = [];
  for (const dir of new Set(files.map((file) => dirname(file)))) {
    try {
      const watcher = watch(dir, { persistent: false }, onEvent);
      // a folder that disappears or a watch the platform cannot keep: the poll still covers it
      watcher.on('error', () => watcher.close());
      watchers.push(watcher);
    } catch {
      // fs.watch unsupported here; polling alone
    }
  }
  const poll = setInterval(() => void check(), options.pollMs ?? 10_000);
  poll.unref();

  return {
    check,
    close() {
      closed = true;
      clearTimeout(debounce);
      clearInterval(poll);
      for (const watcher of watchers) watcher.close();
    },
  };
}

/** What the caller of a watched file decides: what a new value does, where failures go, how often to poll. */
export interface ReloadOptions<T, E extends Error = Error> {
  /** Called with each new valid value before it becomes current; a throw keeps the previous value. */
  readonly onChange: (value: T) => void;
  /** Called when changed files cannot be read, parsed or applied; the previous value stays in force. */
  readonly onError: (error: E) => void;
  /** Re-read the files this often even without a file system event. @default 10000 */
  readonly pollMs?: number;
}

export interface WatchParsedOptions<T, E extends Error = Error> extends Omit<ReloadOptions<T, E>, 'onChange'>, Partial<Pick<ReloadOptions<T, E>, 'onChange'>> {
  /** Files to watch; `parse` receives their contents in this order. */
  readonly files: readonly string[];
  /** Turns the contents into the value in use; throws (the module's own error) when they cannot be used. */
  readonly parse: (contents: Buffer[]) => T;
  /** The module's own error class for a message, so a caller can tell whose file failed. */
  readonly error: (message: string) => E;
  /** Describes a file that cannot be read, e.g. "Cannot read users file /etc/users: ENOENT …". */
  readonly unreadable: (file: string, cause: Error) => string;
  /** What a failed reload keeps in force: "…; keeping the previous <keeps>". */
  readonly keeps: string;
  /** Wait this long after a file event for related writes to settle. @default 100 */
  readonly debounceMs?: number;
}

export interface ParsedWatch<T> {
  /** The last value that parsed and was applied. */
  readonly current: T;
  /** Re-reads the files now (what the timer and file events do); failures go to `onError`. */
  check(): Promise<void>;
  close(): void;
}

/**
 * Reads and parses the files now (throwing the module's error: a start-up failure) and then keeps the value
 * current as they change, keeping the last good value when a change cannot be read, parsed or applied.
 */
export function watchParsed<T, E extends Error = Error>(options: WatchParsedOptions<T, E>): ParsedWatch<T> {
  const { files, parse, error, unreadable, keeps } = options;
  const initial = files.map((file) => {
    try {
      return readFileSync(file);
    } catch (cause) {
      throw error(unreadable(file, cause as Error));
    }
  });
  let current = parse(initial);
  const watch = watchFiles({
    files,
    initial,
    pollMs: options.pollMs,
    debounceMs: options.debounceMs,
    onChange: (contents) => {
      const next = parse(contents);
      options.onChange?.(next);
      current = next;
    },
    onError: (cause) => {
      // fs errors carry the path that failed; anything else is the module's own (parse) or the caller's (apply) error
      const path = (cause as NodeJS.ErrnoException).path;
      const reason = path !== undefined && (cause as NodeJS.ErrnoException).syscall ? unreadable(path, cause) : cause.message;
      options.onError(error(`${reason}; keeping the previous ${keeps}`));
    },
  });
  return {
    get current() {
      return current;
    },
    check: () => watch.check(),
    close: () => watch.close(),
  };
}
