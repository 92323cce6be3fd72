/**
 * Where a message is received whole before anything goes upstream, so a slow
 * or vanishing client never holds an upstream connection. A message stays in
 * memory up to `memoryThresholdBytes` (while all messages in memory together
 * stay under `memoryMaxBytes`) and spills beyond that to a file of its own in
 * `dir`, whose files together stay under `maxBytes`. A message that does not
 * fit fails with SpoolFullError (the client hears 452 4.3.1, nothing is sent).
 *
 * Files are created 0600 with unique names, deleted by `discard()` as soon as
 * the client has its reply, and removed on start-up if a crash left any. The
 * folder belongs to one gateway process.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { SpooledMessage } from './upstream';

export interface SpoolOptions {
  /** Folder for spilled messages; created 0700 if missing. */
  readonly dir: string;
  /** Largest message kept in memory. */
  readonly memoryThresholdBytes: number;
  /** All messages in memory together; past it even small messages spill. */
  readonly memoryMaxBytes: number;
  /** All spilled files together. */
  readonly maxBytes: number;
}

/** The spool has no room for the message. */
export class SpoolFullError extends Error {
  readonly code = 'SPOOL_FULL';
  constructor(needed: number, maxBytes: number) {
    super(`spool full: ${needed} more bytes would exceed spool.maxBytes (${maxBytes})`);
    this.name = 'SpoolFullError';
  }
}

const FILE_NAME = /^spool-[0-9a-f-]{36}\.eml$/;

export class Spool {
  private memoryBytes = 0;
  private diskBytes = 0;

  /** Opens the spool folder and removes what an earlier process left in it; `leftovers` counts those. */
  static async open(options: SpoolOptions): Promise<{ spool: Spool; leftovers: number }> {
    await mkdir(options.dir, { recursive: true, mode: 0o700 });
    // only our own file names: a misconfigured dir (say /tmp) must not lose anyone else's files
    const leftovers = (await readdir(options.dir)).filter((name) => FILE_NAME.test(name));
    await Promise.all(leftovers.map((name) => rm(join(options.dir, name), { force: true })));
    return { spool: new Spool(options), leftovers: leftovers.length };
  }

  private constructor(readonly options: SpoolOptions) {}

  /** Bytes held now, in memory and on disk. */
  get usage(): { readonly memory: number; readonly disk: number } {
    return { memory: this.memoryBytes, disk: this.diskBytes };
  }

  /** Whether a message of `bytes` would fit now (for SIZE= at MAIL FROM; the data decides in the end). */
  fits(bytes: number): boolean {
    const { memoryThresholdBytes, memoryMaxBytes, maxBytes } = this.options;
    if (bytes <= memoryThresholdBytes && this.memoryBytes + bytes <= memoryMaxBytes) return true;
    return this.diskBytes + bytes <= maxBytes;
  }

  /** A new entry to write one message into. */
  create(): SpoolEntry {
    return new SpoolEntry(this);
  }

  /** @internal */
  reserve(medium: 'memory' | 'disk', bytes: number): boolean {
    if (medium === 'memory') {
      if (this.memoryBytes + bytes > this.options.memoryMaxBytes) return false;
      this.memoryBytes += bytes;
      return true;
    }
    if (this.diskBytes + bytes > this.options.maxBytes) return false;
    this.diskBytes += bytes;
    return true;
  }

  /** @internal */
  release(medium: 'memory' | 'disk', bytes: number): void {
    if (medium === 'memory') this.memoryBytes -= bytes;
    else this.diskBytes -= bytes;
  }
}

/**
 * One message: written once, then read as often as needed, then discarded. Not a
 * Writable: receive.ts feeds it directly and pauses the client only while a file
 * write is under way, which saves a stream object and its listeners per message.
 */
export class SpoolEntry implements SpooledMessage {
  private chunks = new MemoryChunks();
  private bytes = 0;
  private memoryReserved = 0;
  private diskReserved = 0;
  private file?: FileHandle;
  private path?: string;
  /** The file operations in order; each write, the close and the deletion wait for the one before. */
  private io: Promise<unknown> = Promise.resolve();
  private discarded = false;

  constructor(private readonly spool: Spool) {}

  get size(): number {
    return this.bytes;
  }

  /** True once the message went to a file. */
  get spilled(): boolean {
    return this.path !== undefined;
  }

  /**
   * Stores `chunk`: at once in memory (returns undefined), or in the file (returns when it is written;
   * later writes queue behind it). Throws SpoolFullError when neither has room.
   */
  write(chunk: Buffer): Promise<unknown> | undefined {
    if (this.discarded) throw new Error('spool entry already discarded');
    const { memoryThresholdBytes, maxBytes } = this.spool.options;
    if (!this.path && this.bytes + chunk.length <= memoryThresholdBytes && this.spool.reserve('memory', chunk.length)) {
      this.chunks.add(chunk);
      this.bytes += chunk.length;
      this.memoryReserved += chunk.length;
      return undefined;
    }
    const needed = this.path ? chunk.length : this.bytes + chunk.length;
    if (!this.spool.reserve('disk', needed)) throw new SpoolFullError(needed, maxBytes);
    this.diskReserved += needed;
    this.bytes += chunk.length;
    if (this.path) {
      this.io = this.io.then(() => this.writeAll([chunk]));
    } else {
      const inMemory = this.chunks.list();
      this.chunks = new MemoryChunks();
      this.spool.release('memory', this.memoryReserved);
      this.memoryReserved = 0;
      // set now, so the next chunk goes to the file too and a discard during the open still deletes it
      const path = (this.path = join(this.spool.options.dir, `spool-${randomUUID()}.eml`));
      this.io = this.io.then(async () => {
        this.file = await open(path, 'wx', 0o600);
        await this.writeAll([...inMemory, chunk]);
      });
    }
    return this.io;
  }

  /** The message is complete: closes the file (undefined when there is none). */
  end(): Promise<unknown> | undefined {
    if (!this.path) return undefined;
    this.io = this.io.then(() => {
      const file = this.file;
      this.file = undefined;
      return file?.close();
    });
    return this.io;
  }

  open(): Readable {
    if (this.discarded) throw new Error('spool entry already discarded');
    return this.path ? createReadStream(this.path) : readableOf(this.chunks.list());
  }

  async buffer(): Promise<Buffer> {
    if (this.discarded) throw new Error('spool entry already discarded');
    return this.path ? readFile(this.path) : Buffer.concat(this.chunks.list(), this.bytes);
  }

  /** Frees the memory and deletes the file; safe at any point and more than once. */
  discard(): Promise<void> {
    if (!this.discarded) {
      this.discarded = true;
      this.spool.release('memory', this.memoryReserved);
      this.memoryReserved = 0;
      this.chunks = new MemoryChunks();
      const path = this.path;
      if (path) {
        this.io = this.io
          .catch(() => undefined)
          .then(() => this.file?.close())
          .catch(() => undefined)
          .then(() => rm(path, { force: true }))
          .finally(() => {
            this.file = undefined;
            this.spool.release('disk', this.diskReserved);
            this.diskReserved = 0;
          });
      }
    }
    return this.io.then(
      () => undefined,
      () => undefined,
    );
  }

  /** A short write (a full disk) must fail the message, never leave it cut off in the spool. */
  private async writeAll(chunks: Buffer[]): Promise<void> {
    const expected = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    const { bytesWritten } = await (this.file as FileHandle).writev(chunks);
    if (bytesWritten !== expected) throw new Error(`short write to ${this.path}: ${bytesWritten} of ${expected} bytes`);
  }
}

/** A stream over buffers already in memory: pushed at once, without Readable.from's promise per chunk. */
function readableOf(chunks: readonly Buffer[]): Readable {
  return new Readable({
    read() {
      for (const chunk of chunks) this.push(chunk);
      this.push(null);
    },
  });
}

/** Small chunks are copied into blocks of up to this size; larger ones are kept as they come. */
const BLOCK_BYTES = 16 * 1024;
/** The first block; each next one doubles, so a short message holds little more than its bytes. */
const FIRST_BLOCK_BYTES = 1024;

/**
 * A message's bytes in memory. A client sending a few bytes at a time must cost
 * those bytes, not a Buffer (and a pinned slice of a socket read) per write.
 */
class MemoryChunks {
  private readonly sealed: Buffer[] = [];
  private block?: Buffer;
  private fill = 0;
  private nextBlock = FIRST_BLOCK_BYTES;

  add(chunk: Buffer): void {
    if (chunk.length >= BLOCK_BYTES / 2) {
      this.seal();
      this.sealed.push(chunk);
      return;
    }
    if (!this.block || this.fill + chunk.length > this.block.length) {
      this.seal();
      this.block = Buffer.allocUnsafe(Math.max(this.nextBlock, chunk.length));
      this.nextBlock = Math.min(BLOCK_BYTES, this.nextBlock * 2);
    }
    chunk.copy(this.block, this.fill);
    this.fill += chunk.length;
  }

  list(): Buffer[] {
    return this.block && this.fill ? [...this.sealed, this.block.subarray(0, this.fill)] : [...this.sealed];
  }

  private seal(): void {
    if (this.block && this.fill) {
      // a mostly empty block is copied down so it does not keep its whole allocation
      this.sealed.push(this.fill < this.block.length / 2 ? Buffer.from(this.block.subarray(0, this.fill)) : this.block.subarray(0, this.fill));
    }
    this.block = undefined;
    this.fill = 0;
  }
}

/** A message that is already in memory as one buffer (a delivery status notification). */
export function bufferedMessage(data: Buffer): SpooledMessage {
  return {
    size: data.length,
    open: () => readableOf([data]),
    buffer: async () => data,
  };
}
