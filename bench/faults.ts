/**
 * `make test-faults`: every fault scenario under load for at least 10 s at
 * C >= 20, one summary line each; exits 1 if any scenario lost, duplicated,
 * crashed or failed to drain.
 *
 *   tsx bench/faults.ts [--duration=12] [--concurrency=20] [--only=rolling-update,...]
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SCENARIOS, runScenario } from './lib/fault-scenarios';
import { REPO_ROOT } from './lib/gateway-process';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '12' },
      concurrency: { type: 'string', default: '20' },
      only: { type: 'string' },
    },
  });
  const names = values.only ? values.only.split(',') : Object.keys(SCENARIOS);
  const durationMs = Number(values.duration) * 1000;
  const concurrency = Number(values.concurrency);
  if (!(durationMs >= 10_000) || !(concurrency >= 20)) {
    console.warn(`note: the issue asks for >= 10 s at C >= 20; running ${durationMs / 1000} s at C = ${concurrency}`);
  }
  let failed = false;
  const rows: string[] = [
    '| scenario | s | C | sent | accepted | refused 4xx | refused 5xx | no reply | abandoned | delivered | lost | dup | unacked (allowed / ambiguous) | gateway exits | problems | notes |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const name of names) {
    const result = await runScenario(name, { durationMs, concurrency });
    const r = result.report;
    const ok = r.ok && result.problems.length === 0;
    failed ||= !ok;
    console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${JSON.stringify({ ...r, examples: undefined, exits: result.exits, upstream: result.upstreamCounts, load: result.load })}`);
    for (const line of [...result.problems, ...result.notes.map((note) => `note: ${note}`), ...result.failureDetails]) console.log(`    ${line}`);
    rows.push(
      `| ${name} | ${durationMs / 1000} | ${concurrency} | ${r.sent} | ${r.accepted} | ${r.refusedTemporary} | ${r.refusedPermanent} | ${r.noReply} | ${r.abandoned} | ${r.delivered} | ${r.lost} | ${r.duplicated} | ${r.unacknowledged} (${r.unacknowledgedAllowed} / ${r.ambiguous}) | ${result.exits.join(', ')} | ${result.problems.join('; ') || 'none'} | ${result.notes.join('; ')} |`,
    );
  }
  console.log(`\n${rows.join('\n')}`);
  mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(REPO_ROOT, 'bench/results', `faults-${new Date().toISOString().replace(/[:.]/g, '-')}.md`), `${rows.join('\n')}\n`);
  if (failed) process.exitCode = 1;
}

main().catch((error: Error) => {
  console.error(error.stack ?? error.message);
  process.exit(1);
});
