/**
 * The benchmark (`make bench`): for each cell of the matrix, starts a fresh
 * gateway process relaying to Postfix's smtp-sink on loopback (through a proxy
 * that delays the sink's replies, for the cells that model a remote smarthost),
 * drives it with the load generator, samples the gateway's CPU time and peak RSS
 * from /proc, checks that the sink received exactly the messages the clients saw
 * accepted, and prints one table (median of --runs runs). Cells marked `peer` run
 * Haraka the same way right beside the gateway, interleaved run by run, and a
 * second table gives the ratio.
 *
 *   tsx bench/run.ts [--runs=3] [--cells=2k-c1,2k-c50] [--duration=1] [--direct] [--no-peer] [--cpu-prof] [--quiet-wait=30]
 *                    [--node-args='--max-semi-space-size=16']
 *
 * --duration scales each cell's time; --direct points the generator straight at
 * smtp-sink (the generator's own ceiling); --no-peer skips Haraka; --cpu-prof
 * writes a V8 profile of the gateway per run to bench/results/profiles; before
 * each run the runner waits up to --quiet-wait seconds for the machine's other
 * CPU use to fall below 15 %. --node-args are given to the gateway's node after
 * the image's NODE_OPTIONS, so a V8 flag there overrides the image's (to measure
 * another young-generation size, say).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { check, describeFailures, latencyStats, median } from './lib/checker';
import type { GatewayConfigInput } from '../gateway/src/config/schema';
import { NODE_OPTIONS } from '../gateway/src/config/constants';
import { REPO_ROOT, benchGatewayConfig, gatewayRuntime, startGatewayProcess } from './lib/gateway-process';
import { startDelayProxy } from './lib/delay-proxy';
import { HARAKA_VERSION, startHaraka } from './lib/haraka';
import { runLoad } from './lib/load-generator';
import { cpuTimeMs, measure, waitForQuiet } from './lib/proc-stats';
import { startSmtpSink } from '../testkit/smtp-sink';

const USAGE = `tsx bench/run.ts [--runs=3] [--cells=a,b] [--duration=1] [--direct] [--no-peer] [--cpu-prof] [--quiet-wait=30] [--node-args='...']

  --runs        runs per cell; the tables give the median
  --cells       which cells (default all, below)
  --duration    scales each cell's time
  --direct      the generator straight at smtp-sink (its own ceiling)
  --no-peer     skip Haraka on the peer cells
  --cpu-prof    a V8 CPU profile of the gateway per run, in bench/results/profiles (tsx bench/profile-summary.ts)
  --quiet-wait  seconds to wait before each run for other CPU use to fall under 15 %
  --node-args   node arguments for the gateway after the image's NODE_OPTIONS (e.g. --max-semi-space-size=16)

cells:`;

interface Targets {
  readonly minRate?: number;
  readonly maxP95?: number;
  readonly maxP99?: number;
  /** The gateway's msgs/s divided by Haraka's, in the same run. */
  readonly minPeerRatio?: number;
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
  /** Clients wait for each reply before the next command (no PIPELINING), as most application mailers do. */
  readonly lockStep?: boolean;
  /** Open loop: messages arrive at this rate (msgs/s, Poisson) over the C connections; latency from arrival. */
  readonly arrivalRate?: number;
  /** The sink answers through the delaying proxy, as a remote smarthost: ms per reply, ms for the dot's reply. */
  readonly upstreamDelay?: { readonly replyMs: number; readonly dotMs: number };
  /** The gateway's pooled upstream connections for this cell. @default the config default */
  readonly upstreamConnections?: number;
  /** Run Haraka beside the gateway on this cell. */
  readonly peer?: boolean;
  /** Gateway settings of this cell (a send rate, a bounded wait). */
  readonly gateway?: GatewayConfigInput;
  readonly targets: Targets;
}

const KiB = 1024;
const MiB = 1024 * 1024;

/** The upstream time of a remote smarthost: 10 ms per reply, 50 ms for the reply to the dot (MAIL, RCPT, DATA, dot: 80 ms). */
const REMOTE = { replyMs: 10, dotMs: 50 } as const;

/** The matrix, with its targets (BENCHMARKS.md explains each). */
const CELLS: readonly Cell[] = [
  { name: '2k-c1', messageBytes: 2 * KiB, concurrency: 1, durationS: 10, targets: { minRate: 1000, maxCpuPerMessage: 0.3 } },
  { name: '2k-c50', messageBytes: 2 * KiB, concurrency: 50, durationS: 10, peer: true, targets: { minRate: 3000, maxP99: 20, maxCpuPerMessage: 0.3 } },
  { name: '2k-c50-lockstep', messageBytes: 2 * KiB, concurrency: 50, durationS: 10, lockStep: true, peer: true, targets: { maxCpuPerMessage: 0.3, minPeerRatio: 4 } },
  { name: '2k-c500', messageBytes: 2 * KiB, concurrency: 500, durationS: 10, rampMs: 1000, targets: { maxCpuPerMessage: 0.3 } },
  { name: '100k-c1', messageBytes: 100 * KiB, concurrency: 1, durationS: 10, targets: { maxCpuPerMessage: 1 } },
  { name: '100k-c50', messageBytes: 100 * KiB, concurrency: 50, durationS: 10, peer: true, targets: { minRate: 1000, maxCpuPerMessage: 0.8 } },
  { name: '100k-c50-lockstep', messageBytes: 100 * KiB, concurrency: 50, durationS: 10, lockStep: true, peer: true, targets: { maxCpuPerMessage: 0.8 } },
  { name: '100k-c500', messageBytes: 100 * KiB, concurrency: 500, durationS: 10, rampMs: 1000, targets: { maxCpuPerMessage: 1 } },
  // Every connection open at once, each sending one 2 KiB message every 5 s (~200 msgs/s in all).
  { name: '1000-open', messageBytes: 2 * KiB, concurrency: 1000, durationS: 20, intervalMs: 5000, openAllFirst: true, rampMs: 2000, targets: { maxPeakRssMiB: 256 } },
  // Open loop, Poisson arrivals over every connection: queueing shows in the latency instead of being hidden by it.
  { name: 'open-1000-r500', messageBytes: 2 * KiB, concurrency: 1000, durationS: 20, arrivalRate: 500, rampMs: 2000, peer: true, targets: { maxP95: 200, maxP99: 500, maxPeakRssMiB: 256 } },
  // A remote smarthost (80 ms per message upstream) at 100 msgs/s: the pool needs 100 × 0.08 = 8 connections.
  // With the default 5 it is overloaded and the queue grows; with 10 the production latency figures hold.
  { name: 'remote-500-r100-pool5', messageBytes: 2 * KiB, concurrency: 500, durationS: 20, arrivalRate: 100, rampMs: 2000, upstreamDelay: REMOTE, upstreamConnections: 5, targets: {} },
  { name: 'remote-500-r100-pool10', messageBytes: 2 * KiB, concurrency: 500, durationS: 20, arrivalRate: 100, rampMs: 2000, upstreamDelay: REMOTE, upstreamConnections: 10, targets: { maxP95: 200, maxP99: 500 } },
  { name: 'remote-1000-r100-pool10', messageBytes: 2 * KiB, concurrency: 1000, durationS: 20, arrivalRate: 100, rampMs: 2000, upstreamDelay: REMOTE, upstreamConnections: 10, peer: true, targets: { maxP95: 200, maxP99: 500 } },
  // SES's rate (14 msgs/s) with 200 clients sending back to back (far above the rate): every reply within
  // maxWait + 1 s, the excess deferred with 451 before anything is sent, nothing lost or duplicated. At the
  // default maxWait (20 s) 200 waiting clients drain in 200 / 14 = 14.3 s, so none is deferred; at 5 s most are.
  { name: 'wait-c200-r14', messageBytes: 2 * KiB, concurrency: 200, durationS: 60, rampMs: 2000, gateway: { upstream: { messagesPerSecond: 14, maxWaitSeconds: 20 } }, targets: { maxP99: 21_000, maxPeakRssMiB: 256 } },
  { name: 'wait-c200-r14-max5', messageBytes: 2 * KiB, concurrency: 200, durationS: 60, rampMs: 2000, gateway: { upstream: { messagesPerSecond: 14, maxWaitSeconds: 5 } }, targets: { maxP99: 6_000, maxPeakRssMiB: 256 } },
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

/** What a run measures: the gateway, Haraka beside it, or the sink alone (the generator's ceiling). */
type Server = 'gateway' | 'haraka' | 'direct';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '1' },
      cells: { type: 'string', default: CELLS.map((cell) => cell.name).join(',') },
      duration: { type: 'string', default: '1' },
      direct: { type: 'boolean', default: false },
      'no-peer': { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      'upstream-connections': { type: 'string' },
      'quiet-wait': { type: 'string', default: '30' },
      'node-args': { type: 'string', default: '' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    for (const cell of CELLS) console.log(`  ${cell.name.padEnd(24)} ${describeCell(cell)}`);
    return;
  }
  const nodeArgs = values['node-args']!.split(' ').filter(Boolean);
  const runs = Number(values.runs);
  const durationScale = Number(values.duration);
  const wanted = new Set(values.cells!.split(','));
  const cells = CELLS.filter((cell) => wanted.has(cell.name));
  const unknown = [...wanted].filter((name) => !CELLS.some((cell) => cell.name === name));
  if (unknown.length) throw new Error(`--cells: unknown cell ${unknown.join(', ')}; expected some of ${CELLS.map((c) => c.name).join(', ')}`);
  const resultsDir = join(REPO_ROOT, 'bench/results');
  mkdirSync(join(resultsDir, 'profiles'), { recursive: true });
  const serversOf = (cell: Cell): Server[] => (values.direct ? ['direct'] : cell.peer && !values['no-peer'] ? ['gateway', 'haraka'] : ['gateway']);

  const conditions = describeConditions({ runs, direct: values.direct!, nodeArgs });
  console.log(conditions);
  const sink = await startSmtpSink();
  const results: Record<string, Figures[]> = {};
  let failed = false;
  try {
    for (const cell of cells) {
      for (let run = 0; run < runs; run += 1) {
        // Interleaved, and in turn first, so a drift in the machine's load falls on both alike.
        const servers = serversOf(cell);
        for (const server of run % 2 ? [...servers].reverse() : servers) {
          await sink.reset();
          const figures = await runCell(cell, run, server, sink, {
            durationScale,
            cpuProf: values['cpu-prof']! && server === 'gateway' ? join(resultsDir, 'profiles') : undefined,
            upstreamConnections: values['upstream-connections'] ? Number(values['upstream-connections']) : cell.upstreamConnections,
            quietWaitS: Number(values['quiet-wait']),
            nodeArgs,
          });
          (results[resultKey(cell, server)] ??= []).push(figures);
          console.log(`  ${cell.name} ${server} run ${run + 1}: ${JSON.stringify(figures)}`);
          if (figures.lost || figures.duplicated || figures.unacknowledged || figures.gatewayExit !== '0') failed = true;
        }
      }
    }
  } finally {
    await sink.stop();
  }
  const busy = Object.values(results).flat().map((f) => f.backgroundBusy * 100);
  const table = [
    `${conditions} Other CPU use just before each run: median ${n(median(busy), 0)} %, highest ${n(Math.max(...busy), 0)} %.`,
    section('Haraka side by side, lock-step and pipelining clients', renderPeerTable(cells, results)),
    section('Open loop (Poisson arrivals, latency from the arrival) and a remote smarthost', renderOpenLoopTable(cells, results)),
    section('Memory', renderMemoryTable(cells, results)),
    section('Every cell', renderTable(cells, results, serversOf)),
  ]
    .filter(Boolean)
    .join('\n\n');
  console.log(`\n${table}`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(resultsDir, `bench-${stamp}.json`), JSON.stringify({ date: new Date().toISOString(), direct: values.direct, results }, null, 2));
  writeFileSync(join(resultsDir, `bench-${stamp}.md`), `${table}\n`);
  if (failed) {
    console.error('FAILED: the sink did not receive exactly the accepted messages, or a server did not exit 0');
    process.exitCode = 1;
  }
}

const resultKey = (cell: Cell, server: Server) => (server === 'haraka' ? `${cell.name}@haraka` : cell.name);

async function runCell(
  cell: Cell,
  run: number,
  server: Server,
  sink: Awaited<ReturnType<typeof startSmtpSink>>,
  options: { durationScale: number; cpuProf?: string; upstreamConnections?: number; quietWaitS: number; nodeArgs: readonly string[] },
): Promise<Figures> {
  // Other people's work on this shared machine skews every figure: wait for a quiet moment, and say how quiet it was.
  const backgroundBusy = await waitForQuiet(0.15, options.quietWaitS * 1000);
  const proxy = cell.upstreamDelay ? await startDelayProxy({ upstream: sink, replyDelayMs: cell.upstreamDelay.replyMs, dotDelayMs: cell.upstreamDelay.dotMs }) : undefined;
  const upstream = proxy ?? sink;
  const gateway =
    server === 'gateway'
      ? await startGatewayProcess({
          config: benchGatewayConfig(upstream, {
            // The limit is a policy knob, not what this cell measures: leave headroom above 1,000.
            policy: { maxConnections: 1200 },
            ...cell.gateway,
            upstream: { ...cell.gateway?.upstream, ...(options.upstreamConnections ? { maxConnections: options.upstreamConnections } : {}) },
          }),
          nodeArgs: [
            ...options.nodeArgs,
            ...(options.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProf}`, `--cpu-prof-name=${cell.name}-${run}.cpuprofile`] : []),
          ],
        })
      : undefined;
  const haraka = server === 'haraka' ? await startHaraka({ upstream }) : undefined;
  const target = gateway ? { host: '127.0.0.1', port: gateway.ports.relay } : haraka ?? upstream;
  const pid = gateway?.pid ?? haraka?.pid;
  // Let start-up garbage settle so the baseline RSS is the idle server's.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const meter = pid ? measure(pid) : undefined;
  const generatorCpu = process.cpuUsage();
  const sinkCpu = cpuTimeMs(sink.pid);
  const runId = `${cell.name}-${server}-${run}-${Date.now().toString(36)}`;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let load: Awaited<ReturnType<typeof runLoad>>;
  let usage: ReturnType<NonNullable<typeof meter>['stop']> | undefined;
  try {
    load = await runLoad({
      target: () => target,
      concurrency: cell.concurrency,
      messageBytes: cell.messageBytes,
      durationMs: cell.durationS * 1000 * options.durationScale,
      maxMessages: cell.maxMessages,
      intervalMs: cell.intervalMs,
      openAllFirst: cell.openAllFirst,
      rampMs: cell.rampMs,
      pipelining: !cell.lockStep,
      arrivalRate: cell.arrivalRate,
      localAddresses: CLIENT_ADDRESSES,
      runId,
    });
    usage = meter?.stop();
  } finally {
    exit = gateway ? await gateway.stop() : undefined;
    await haraka?.stop();
    await proxy?.close();
  }
  const generatorCpuMs = (({ user, system }) => (user + system) / 1000)(process.cpuUsage(generatorCpu));
  const sinkCpuMs = cpuTimeMs(sink.pid) - sinkCpu;
  const deliveries = await sink.deliveries();
  const report = check(load.outcomes, deliveries, runId);
  if (!report.ok) for (const line of describeFailures(report, load.outcomes, deliveries)) console.error(`  ${cell.name} ${server}: ${line}`);
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

type Medians = Record<keyof Figures, number>;

function medians(runs: readonly Figures[] | undefined): Medians | undefined {
  if (!runs?.length) return undefined;
  return Object.fromEntries(
    (Object.keys(runs[0]) as Array<keyof Figures>).filter((key) => key !== 'gatewayExit').map((key) => [key, median(runs.map((r) => Number(r[key])))]),
  ) as Medians;
}

function verdict(cell: Cell, f: Medians, peer: Medians | undefined): string {
  const t = cell.targets;
  const misses: string[] = [];
  if (t.minRate !== undefined && f.rate < t.minRate) misses.push(`rate<${t.minRate}`);
  if (t.maxP95 !== undefined && f.p95 > t.maxP95) misses.push(`p95>${t.maxP95}`);
  if (t.maxP99 !== undefined && f.p99 > t.maxP99) misses.push(`p99>${t.maxP99}`);
  if (t.maxCpuPerMessage !== undefined && f.cpuPerMessage > t.maxCpuPerMessage) misses.push(`cpu>${t.maxCpuPerMessage}`);
  if (t.maxPeakRssMiB !== undefined && f.peakRssMiB > t.maxPeakRssMiB) misses.push(`rss>${t.maxPeakRssMiB}`);
  if (t.maxRssGrowthMiB !== undefined && f.rssGrowthMiB > t.maxRssGrowthMiB) misses.push(`growth>${t.maxRssGrowthMiB}`);
  if (t.minPeerRatio !== undefined && peer && f.rate / peer.rate < t.minPeerRatio) misses.push(`Haraka ratio<${t.minPeerRatio}`);
  if (f.lost || f.duplicated || f.unacknowledged) misses.push('sink ≠ accepted');
  return misses.length ? `missed: ${misses.join(', ')}` : 'met';
}

const sizeOf = (cell: Cell) => (cell.messageBytes >= MiB ? `${(cell.messageBytes / 1e6).toFixed(0)} MB` : `${cell.messageBytes / KiB} KiB`);

/** How the clients send and what stands upstream. */
function modeOf(cell: Cell): string {
  return [
    cell.arrivalRate ? `open loop ${cell.arrivalRate}/s` : cell.lockStep ? 'lock-step' : 'pipelining',
    cell.upstreamDelay ? `upstream +${cell.upstreamDelay.replyMs}/${cell.upstreamDelay.dotMs} ms, pool ${cell.upstreamConnections ?? 'default'}` : '',
  ]
    .filter(Boolean)
    .join(', ');
}

const describeCell = (cell: Cell) => `${sizeOf(cell)}, C=${cell.concurrency}, ${modeOf(cell)}, ${cell.durationS} s${cell.peer ? ', Haraka beside it' : ''}`;

const n = (value: number, digits = 1) => (Number.isNaN(value) ? '–' : value.toFixed(digits));

/** A Markdown table, or '' when there are no rows (the section is then left out). */
function markdownTable(header: string, rows: string[]): string {
  if (!rows.length) return '';
  const rule = `|${header.split('|').slice(1, -1).map(() => '---').join('|')}|`;
  return [header, rule, ...rows].join('\n');
}

function renderTable(cells: readonly Cell[], results: Record<string, Figures[]>, serversOf: (cell: Cell) => Server[]): string {
  const header =
    '| cell | server | size | C | mode | msgs/s | p50 ms | p95 ms | p99 ms | max ms | CPU ms/msg | generator + sink CPU ms/msg | peak RSS MiB | RSS growth MiB | sent | accepted | delivered | lost | dup | open max | other load | target |';
  const rows = cells.flatMap((cell) =>
    serversOf(cell).flatMap((server) => {
      const f = medians(results[resultKey(cell, server)]);
      if (!f) return [];
      const size = sizeOf(cell);
      const mode = modeOf(cell);
      const target = server === 'gateway' ? verdict(cell, f, medians(results[resultKey(cell, 'haraka')])) : server === 'direct' ? 'n/a (direct)' : 'peer';
      return [
        `| ${cell.name} | ${server} | ${size} | ${cell.concurrency} | ${mode} | ${n(f.rate, 0)} | ${n(f.p50)} | ${n(f.p95)} | ${n(f.p99)} | ${n(f.max)} | ${n(f.cpuPerMessage, 3)} | ${n(f.generatorCpuPerMessage, 2)} + ${n(f.sinkCpuPerMessage, 2)} | ${n(f.peakRssMiB)} | ${n(f.rssGrowthMiB)} | ${n(f.sent, 0)} | ${n(f.accepted, 0)} | ${n(f.delivered, 0)} | ${n(f.lost, 0)} | ${n(f.duplicated, 0)} | ${n(f.maxOpen, 0)} | ${n(f.backgroundBusy * 100, 0)} % | ${target} |`,
      ];
    }),
  );
  return markdownTable(header, rows);
}

/** Gateway against Haraka, cell by cell (medians of the interleaved runs). */
function renderPeerTable(cells: readonly Cell[], results: Record<string, Figures[]>): string {
  const rows = cells.flatMap((cell) => {
    const gateway = medians(results[resultKey(cell, 'gateway')]);
    const haraka = medians(results[resultKey(cell, 'haraka')]);
    // open-loop cells deliver what is offered on both sides: their comparison is latency, in their own table
    if (!gateway || !haraka || cell.arrivalRate) return [];
    return [
      `| ${cell.name} | ${modeOf(cell)} | ${n(gateway.rate, 0)} | ${n(haraka.rate, 0)} | ${n(gateway.rate / haraka.rate, 2)}× | ${n(gateway.cpuPerMessage, 3)} | ${n(haraka.cpuPerMessage, 3)} | ${n(gateway.p99)} | ${n(haraka.p99)} | ${eachRun(results[resultKey(cell, 'gateway')])} | ${verdict(cell, gateway, haraka)} |`,
    ];
  });
  return markdownTable(
    '| cell | clients | gateway msgs/s | Haraka msgs/s | ratio | gateway CPU ms/msg | Haraka CPU ms/msg | gateway p99 ms | Haraka p99 ms | gateway runs: msgs/s / CPU ms | target |',
    rows,
  );
}

/** The cells whose messages arrive at a fixed rate: what was offered, what came through, how long it waited (Haraka's beside it where it ran). */
function renderOpenLoopTable(cells: readonly Cell[], results: Record<string, Figures[]>): string {
  const rows = cells.flatMap((cell) => {
    const f = cell.arrivalRate ? medians(results[resultKey(cell, 'gateway')]) : undefined;
    if (!f) return [];
    const haraka = medians(results[resultKey(cell, 'haraka')]);
    const peer = haraka ? `${n(haraka.rate, 0)} | ${n(haraka.p95)} | ${n(haraka.p99)} | ${n(haraka.cpuPerMessage, 3)}` : '– | – | – | –';
    return [
      `| ${cell.name} | ${cell.concurrency} | ${cell.upstreamDelay ? `+${cell.upstreamDelay.replyMs}/${cell.upstreamDelay.dotMs} ms, pool ${cell.upstreamConnections ?? 'default'}` : 'none'} | ${cell.arrivalRate}/s | ${n(f.rate, 0)} | ${n(f.p50)} | ${n(f.p95)} | ${n(f.p99)} | ${n(f.cpuPerMessage, 3)} | ${peer} | ${n(f.lost, 0)} | ${n(f.duplicated, 0)} | ${verdict(cell, f, undefined)} |`,
    ];
  });
  return markdownTable(
    '| cell | connections | upstream delay | offered | delivered msgs/s | p50 ms | p95 ms | p99 ms | gateway CPU ms/msg | Haraka msgs/s | Haraka p95 ms | Haraka p99 ms | Haraka CPU ms/msg | lost | dup | target |',
    rows,
  );
}

/** The cells with a memory target. */
function renderMemoryTable(cells: readonly Cell[], results: Record<string, Figures[]>): string {
  const rows = cells.flatMap((cell) => {
    const f = cell.targets.maxPeakRssMiB !== undefined || cell.targets.maxRssGrowthMiB !== undefined ? medians(results[resultKey(cell, 'gateway')]) : undefined;
    if (!f) return [];
    // only the memory targets here; the cell's others are judged in its own table
    const memoryOnly = { ...cell, targets: { maxPeakRssMiB: cell.targets.maxPeakRssMiB, maxRssGrowthMiB: cell.targets.maxRssGrowthMiB } };
    return [`| ${cell.name} | ${describeCell(cell)} | ${n(f.peakRssMiB)} | ${n(f.rssGrowthMiB)} | ${verdict(memoryOnly, f, undefined)} |`];
  });
  return markdownTable('| cell | what | peak RSS MiB | RSS growth MiB | target |', rows);
}

/** Every run's msgs/s and CPU ms/msg, so a reader sees the spread behind the median. */
const eachRun = (runs: readonly Figures[] | undefined) => (runs ?? []).map((f) => `${n(f.rate, 0)} / ${n(f.cpuPerMessage, 2)}`).join(', ');

const section = (title: string, table: string) => (table ? `#### ${title}\n\n${table}` : '');

/** The paragraph that says when, where and how the tables were measured. */
function describeConditions(options: { runs: number; direct: boolean; nodeArgs: readonly string[] }): string {
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT }).toString().trim();
  const dirty = execFileSync('git', ['status', '--porcelain', 'gateway/src'], { cwd: REPO_ROOT }).toString().trim().split('\n').filter(Boolean).length;
  const runtime = options.direct
    ? 'DIRECT to smtp-sink (no gateway)'
    : `gateway (${gatewayRuntime()}) at ${commit}${dirty ? ` (+${dirty} uncommitted files in gateway/src)` : ''}, NODE_OPTIONS \`${[NODE_OPTIONS, ...options.nodeArgs].join(' ')}\``;
  return (
    `Conditions: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${cpus().length} CPUs (${cpus()[0]?.model.trim()}), ` +
    `${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, load average ${loadavg()[0].toFixed(1)} at the start, Node.js ${process.version}, ${runtime}, ` +
    `Haraka ${HARAKA_VERSION} beside it on the peer cells (interleaved), smtp-sink upstream on loopback; median of ${options.runs} run${options.runs === 1 ? '' : 's'} per cell.`
  );
}

main().catch((error: Error) => {
  console.error(error.stack ?? error.message);
  process.exit(1);
});
