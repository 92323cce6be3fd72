/**
 * The benchmark (`make bench`): for each cell of the matrix, starts a fresh
 * gateway process relaying to Postfix's smtp-sink on loopback, drives it with
 * the load generator, samples the gateway's CPU time and peak RSS from /proc,
 * checks that the sink received exactly the messages the clients saw accepted,
 * and prints one table (median of --runs runs).
 *
 *   tsx bench/run.ts [--runs=3] [--cells=2k-c1,2k-c50] [--duration=1] [--direct] [--cpu-prof] [--quiet-wait=30]
 *
 * --duration scales each cell's time; --direct points the generator straight at
 * smtp-sink (the generator's own ceiling); --cpu-prof writes a V8 profile of the
 * gateway per run to bench/results/profiles; before each run the runner waits up
 * to --quiet-wait seconds for the machine's other CPU use to fall below 15 %.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, freemem, totalmem, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { check, describeFailures, latencyStats } from './lib/checker';
import { REPO_ROOT, benchGatewayConfig, gatewayRuntime, startGatewayProcess } from './lib/gateway-process';
import { runLoad } from './lib/load-generator';
import { cpuTimeMs, measure, waitForQuiet } from './lib/proc-stats';
import { startSmtpSink } from './lib/smtp-sink';

interface Targets {
  readonly minRate?: number;
  readonly maxP99?: number;
  readonly maxCpuPerMessage?: number;
  readonly maxPeakRssMiB?: number;
  readonly maxRssGrowthMiB?: number;
}

interface Cell {
  readonly name: string;
  readonly messageBytes: number;
  readonly concurrency: number;
  /** Seconds; scaled by --duration. */
  readonly durationS: number;
  readonly maxMessages?: number;
  readonly intervalMs?: number;
  readonly openAllFirst?: boolean;
  readonly rampMs?: number;
  readonly targets: Targets;
}

const KiB = 1024;
const MiB = 1024 * 1024;

/** The matrix the issue asks for, with its targets. */
const CELLS: readonly Cell[] = [
  { name: '2k-c1', messageBytes: 2 * KiB, concurrency: 1, durationS: 10, targets: { minRate: 1000, maxCpuPerMessage: 0.3 } },
  { name: '2k-c50', messageBytes: 2 * KiB, concurrency: 50, durationS: 10, targets: { minRate: 3000, maxP99: 20, maxCpuPerMessage: 0.3 } },
  { name: '2k-c500', messageBytes: 2 * KiB, concurrency: 500, durationS: 10, rampMs: 1000, targets: { maxCpuPerMessage: 0.3 } },
  { name: '100k-c1', messageBytes: 100 * KiB, concurrency: 1, durationS: 10, targets: { maxCpuPerMessage: 1 } },
  { name: '100k-c50', messageBytes: 100 * KiB, concurrency: 50, durationS: 10, targets: { minRate: 1000, maxCpuPerMessage: 1 } },
  { name: '100k-c500', messageBytes: 100 * KiB, concurrency: 500, durationS: 10, rampMs: 1000, targets: { maxCpuPerMessage: 1 } },
  // Every connection open at once, each sending one 2 KiB message every 5 s (~200 msgs/s in all).
  { name: '1000-open', messageBytes: 2 * KiB, concurrency: 1000, durationS: 20, intervalMs: 5000, openAllFirst: true, rampMs: 2000, targets: { maxPeakRssMiB: 256 } },
  { name: '25mb', messageBytes: 25_000_000, concurrency: 1, durationS: 60, maxMessages: 1, targets: { maxRssGrowthMiB: 40 } },
];

/** Clients come from 20 loopback addresses, as pods on many nodes would, so per-IP limits stay at their defaults. */
const CLIENT_ADDRESSES = Array.from({ length: 20 }, (_, i) => `127.0.0.${10 + i}`);

interface Figures {
  rate: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  cpuPerMessage: number;
  /** The load generator's own CPU (this process) per accepted message. */
  generatorCpuPerMessage: number;
  /** smtp-sink's CPU per accepted message. */
  sinkCpuPerMessage: number;
  peakRssMiB: number;
  rssGrowthMiB: number;
  sent: number;
  accepted: number;
  delivered: number;
  lost: number;
  duplicated: number;
  /** Delivered without the client seeing 250 (must be 0: no client vanishes here). */
  unacknowledged: number;
  refused: number;
  noReply: number;
  maxOpen: number;
  connectFailures: number;
  gatewayExit: string;
  loadAvg: number;
  /** Share of both CPUs busy with other work just before the run (0..1). */
  backgroundBusy: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '1' },
      cells: { type: 'string', default: CELLS.map((cell) => cell.name).join(',') },
      duration: { type: 'string', default: '1' },
      direct: { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      'upstream-connections': { type: 'string' },
      'quiet-wait': { type: 'string', default: '30' },
    },
  });
  const runs = Number(values.runs);
  const durationScale = Number(values.duration);
  const wanted = new Set(values.cells!.split(','));
  const cells = CELLS.filter((cell) => wanted.has(cell.name));
  const unknown = [...wanted].filter((name) => !CELLS.some((cell) => cell.name === name));
  if (unknown.length) throw new Error(`--cells: unknown cell ${unknown.join(', ')}; expected some of ${CELLS.map((c) => c.name).join(', ')}`);
  const resultsDir = join(REPO_ROOT, 'bench/results');
  mkdirSync(join(resultsDir, 'profiles'), { recursive: true });

  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT }).toString().trim();
  const dirty = execFileSync('git', ['status', '--porcelain', 'gateway/src'], { cwd: REPO_ROOT }).toString().trim().split('\n').filter(Boolean).length;
  console.log(
    `# smtp-gateway benchmark ${new Date().toISOString()} at ${commit}${dirty ? ` (+${dirty} uncommitted files in gateway/src)` : ''} — ${cpus().length} CPUs (${cpus()[0]?.model}), ` +
      `${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM (${(freemem() / 2 ** 30).toFixed(1)} free), node ${process.version}, ` +
      `${values.direct ? 'DIRECT to smtp-sink (no gateway)' : `gateway runtime: ${gatewayRuntime()}`}, runs per cell: ${runs}`,
  );
  const sink = await startSmtpSink();
  const results: Record<string, Figures[]> = {};
  let failed = false;
  try {
    for (const cell of cells) {
      results[cell.name] = [];
      for (let run = 0; run < runs; run += 1) {
        await sink.reset();
        const figures = await runCell(cell, run, sink, {
          direct: values.direct!,
          durationScale,
          cpuProf: values['cpu-prof']! ? join(resultsDir, 'profiles') : undefined,
          upstreamConnections: values['upstream-connections'] ? Number(values['upstream-connections']) : undefined,
          quietWaitS: Number(values['quiet-wait']),
        });
        results[cell.name].push(figures);
        console.log(`  ${cell.name} run ${run + 1}: ${JSON.stringify(figures)}`);
        if (figures.lost || figures.duplicated || figures.unacknowledged || figures.gatewayExit !== '0') failed = true;
      }
    }
  } finally {
    await sink.stop();
  }
  const table = renderTable(cells, results, values.direct!);
  console.log(`\n${table}`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(resultsDir, `bench-${stamp}.json`), JSON.stringify({ date: new Date().toISOString(), direct: values.direct, results }, null, 2));
  writeFileSync(join(resultsDir, `bench-${stamp}.md`), `${table}\n`);
  if (failed) {
    console.error('FAILED: the sink did not receive exactly the accepted messages, or the gateway did not exit 0');
    process.exitCode = 1;
  }
}

async function runCell(
  cell: Cell,
  run: number,
  sink: Awaited<ReturnType<typeof startSmtpSink>>,
  options: { direct: boolean; durationScale: number; cpuProf?: string; upstreamConnections?: number; quietWaitS: number },
): Promise<Figures> {
  // Other people's work on this shared machine skews every figure: wait for a quiet moment, and say how quiet it was.
  const backgroundBusy = await waitForQuiet(0.15, options.quietWaitS * 1000);
  const gateway = options.direct
    ? undefined
    : await startGatewayProcess({
        config: benchGatewayConfig(sink, {
          // The limit is a policy knob, not what this cell measures: leave headroom above 1,000.
          policy: { maxConnections: 1200 },
          ...(options.upstreamConnections ? { upstream: { maxConnections: options.upstreamConnections } } : {}),
        }),
        nodeArgs: options.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProf}`, `--cpu-prof-name=${cell.name}-${run}.cpuprofile`] : [],
      });
  const target = gateway ? { host: '127.0.0.1', port: gateway.ports.relay } : sink;
  // Let start-up garbage settle so the baseline RSS is the idle gateway's.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const meter = gateway ? measure(gateway.pid) : undefined;
  const generatorCpu = process.cpuUsage();
  const sinkCpu = cpuTimeMs(sink.pid);
  const runId = `${cell.name}-${run}-${Date.now().toString(36)}`;
  const load = await runLoad({
    target: () => target,
    concurrency: cell.concurrency,
    messageBytes: cell.messageBytes,
    durationMs: cell.durationS * 1000 * options.durationScale,
    maxMessages: cell.maxMessages,
    intervalMs: cell.intervalMs,
    openAllFirst: cell.openAllFirst,
    rampMs: cell.rampMs,
    localAddresses: CLIENT_ADDRESSES,
    runId,
  });
  const usage = meter?.stop();
  const generatorCpuMs = (({ user, system }) => (user + system) / 1000)(process.cpuUsage(generatorCpu));
  const sinkCpuMs = cpuTimeMs(sink.pid) - sinkCpu;
  const exit = gateway ? await gateway.stop() : undefined;
  const deliveries = await sink.deliveries();
  const report = check(load.outcomes, deliveries, runId);
  if (!report.ok) for (const line of describeFailures(report, load.outcomes, deliveries)) console.error(`  ${cell.name}: ${line}`);
  const latency = latencyStats(load.outcomes);
  return {
    rate: load.elapsedMs ? (report.accepted * 1000) / load.elapsedMs : 0,
    ...latency,
    cpuPerMessage: usage && report.accepted ? usage.cpuMs / report.accepted : Number.NaN,
    generatorCpuPerMessage: report.accepted ? generatorCpuMs / report.accepted : Number.NaN,
    sinkCpuPerMessage: report.accepted ? sinkCpuMs / report.accepted : Number.NaN,
    peakRssMiB: usage ? usage.peakRss / MiB : Number.NaN,
    rssGrowthMiB: usage ? (usage.peakRss - usage.startRss) / MiB : Number.NaN,
    sent: report.sent,
    accepted: report.accepted,
    delivered: report.delivered,
    lost: report.lost,
    duplicated: report.duplicated,
    unacknowledged: report.unacknowledged + report.unknown,
    refused: report.refusedTemporary + report.refusedPermanent,
    noReply: report.noReply,
    maxOpen: load.maxOpen,
    connectFailures: load.connectFailures,
    gatewayExit: exit ? String(exit.code ?? exit.signal) : '0',
    loadAvg: loadavg()[0],
    backgroundBusy,
  };
}

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (!sorted.length) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function verdict(cell: Cell, f: Record<keyof Figures, number>): string {
  const t = cell.targets;
  const misses: string[] = [];
  if (t.minRate !== undefined && f.rate < t.minRate) misses.push(`rate<${t.minRate}`);
  if (t.maxP99 !== undefined && f.p99 > t.maxP99) misses.push(`p99>${t.maxP99}`);
  if (t.maxCpuPerMessage !== undefined && f.cpuPerMessage > t.maxCpuPerMessage) misses.push(`cpu>${t.maxCpuPerMessage}`);
  if (t.maxPeakRssMiB !== undefined && f.peakRssMiB > t.maxPeakRssMiB) misses.push(`rss>${t.maxPeakRssMiB}`);
  if (t.maxRssGrowthMiB !== undefined && f.rssGrowthMiB > t.maxRssGrowthMiB) misses.push(`growth>${t.maxRssGrowthMiB}`);
  if (f.lost || f.duplicated || f.unacknowledged) misses.push('sink ≠ accepted');
  return misses.length ? `missed: ${misses.join(', ')}` : 'met';
}

function renderTable(cells: readonly Cell[], results: Record<string, Figures[]>, direct: boolean): string {
  const header =
    '| cell | size | C | msgs/s | p50 ms | p95 ms | p99 ms | max ms | CPU ms/msg | generator + sink CPU ms/msg | peak RSS MiB | RSS growth MiB | sent | accepted | delivered | lost | dup | open max | other load | target |';
  const rule = `|${header.split('|').slice(1, -1).map(() => '---').join('|')}|`;
  const rows = cells.map((cell) => {
    const runs = results[cell.name] ?? [];
    const f = Object.fromEntries(
      (Object.keys(runs[0] ?? {}) as Array<keyof Figures>).filter((key) => key !== 'gatewayExit').map((key) => [key, median(runs.map((r) => Number(r[key])))]),
    ) as Record<keyof Figures, number>;
    const size = cell.messageBytes >= MiB ? `${(cell.messageBytes / 1e6).toFixed(0)} MB` : `${cell.messageBytes / KiB} KiB`;
    const n = (value: number, digits = 1) => (Number.isNaN(value) ? '–' : value.toFixed(digits));
    return `| ${cell.name} | ${size} | ${cell.concurrency} | ${n(f.rate, 0)} | ${n(f.p50)} | ${n(f.p95)} | ${n(f.p99)} | ${n(f.max)} | ${n(f.cpuPerMessage, 3)} | ${n(f.generatorCpuPerMessage, 2)} + ${n(f.sinkCpuPerMessage, 2)} | ${n(f.peakRssMiB)} | ${n(f.rssGrowthMiB)} | ${n(f.sent, 0)} | ${n(f.accepted, 0)} | ${n(f.delivered, 0)} | ${n(f.lost, 0)} | ${n(f.duplicated, 0)} | ${n(f.maxOpen, 0)} | ${n(f.backgroundBusy * 100, 0)} % | ${direct ? 'n/a (direct)' : verdict(cell, f)} |`;
  });
  return [header, rule, ...rows].join('\n');
}

main().catch((error: Error) => {
  console.error(error.stack ?? error.message);
  process.exit(1);
});
