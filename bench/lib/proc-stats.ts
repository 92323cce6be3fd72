/**
 * CPU time and memory of another process, read from /proc (Linux), so the
 * figures are the gateway's own and not the load generator's.
 */
import { readFileSync, writeFileSync } from 'node:fs';

/** USER_HZ: /proc/PID/stat counts CPU time in these ticks (100 on every Linux we run on). */
const TICKS_PER_SECOND = 100;

/** User + system CPU time used so far, in ms (10 ms resolution). */
export function cpuTimeMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  // The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / TICKS_PER_SECOND;
}

export interface MemoryStats {
  /** Resident set now, bytes. */
  readonly rss: number;
  /** Peak resident set since start or the last reset (VmHWM), bytes. */
  readonly peakRss: number;
}

export function memory(pid: number): MemoryStats {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  return { rss: kib('VmRSS'), peakRss: kib('VmHWM') };
}

/** Resets VmHWM to the current RSS (needs the right to write /proc/PID/clear_refs). */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** CPU and peak memory of `pid` between `start()` and `stop()`. */
export function measure(pid: number): { stop(): { cpuMs: number; peakRss: number; startRss: number } } {
  resetPeak(pid);
  const startCpu = cpuTimeMs(pid);
  const startRss = memory(pid).rss;
  return {
    stop: () => ({ cpuMs: cpuTimeMs(pid) - startCpu, peakRss: memory(pid).peakRss, startRss }),
  };
}

/** Fraction of all CPUs busy (0..1) over `ms`, from /proc/stat: what everything else on the machine is doing. */
export async function machineBusy(ms = 1000): Promise<number> {
  const read = () => {
    const fields = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = fields[3] + (fields[4] ?? 0); // idle + iowait
    return { idle, total: fields.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = read();
  return b.total > a.total ? 1 - (b.idle - a.idle) / (b.total - a.total) : 0;
}

/** Waits (at most `maxWaitMs`) until the machine is quieter than `busyBelow`; returns the last reading. */
export async function waitForQuiet(busyBelow: number, maxWaitMs: number): Promise<number> {
  const deadline = Date.now() + maxWaitMs;
  let busy = await machineBusy();
  while (busy >= busyBelow && Date.now() < deadline) busy = await machineBusy();
  return busy;
}
