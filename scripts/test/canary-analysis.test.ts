/**
 * scripts/lib/canary-analysis.awk, the canary gate's judgement, run with the system awk on /metrics text
 * scraped over HTTP from real gateways that relayed, deferred, rejected and lost mail as each case needs.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scrapeGatewayMetrics } from './helpers/gateway-metrics';
import { REPO_ROOT } from './helpers/repo';

const SCRIPT = join(REPO_ROOT, 'scripts/lib/canary-analysis.awk');
const dir = mkdtempSync(join(tmpdir(), 'smtpgw-canary-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Scraped once: a healthy pod (5 % deferred, 5 % refused), a worse one of each kind, and an idle one. */
const pods: Record<string, string> = {};
beforeAll(async () => {
  pods.healthy = await scrapeGatewayMetrics({ relayed: 18, deferred: 1, rejected: 1, aborted: 2 });
  pods.defersMore = await scrapeGatewayMetrics({ relayed: 15, deferred: 4, rejected: 1 });
  pods.refusesMore = await scrapeGatewayMetrics({ relayed: 15, deferred: 1, rejected: 4 });
  pods.idle = await scrapeGatewayMetrics({ relayed: 0 });
}, 60_000);

let files = 0;
const file = (text: string) => {
  const path = join(dir, `pod-${++files}.prom`);
  writeFileSync(path, text);
  return path;
};

/** Run the analysis: the stable release's pod texts, then the canary's. */
function analyse(stable: string[], canary: string[], vars: { maxIncrease?: string; minMessages?: string } = {}) {
  const result = spawnSync(
    'awk',
    [
      '-v', `max_increase=${vars.maxIncrease ?? '1'}`,
      '-v', `min_messages=${vars.minMessages ?? '10'}`,
      '-f', SCRIPT,
      'release=stable', ...stable.map(file),
      'release=canary', ...canary.map(file),
    ],
    { encoding: 'utf8' },
  );
  return { status: result.status, out: result.stdout, err: result.stderr };
}

describe('canary-analysis.awk on scraped gateway metrics', () => {
  it('lets a canary that does as well as the stable release go on, printing both', () => {
    const result = analyse([pods.healthy, pods.healthy], [pods.healthy]);
    expect(result.err).toBe('');
    expect(result.out).toContain('stable: 40 messages answered (36 relayed), 5.00% deferred, 5.00% refused');
    expect(result.out).toContain('canary: 20 messages answered (18 relayed), 5.00% deferred, 5.00% refused');
    expect(result.out).toContain('the canary is within 1 percentage points of the stable release');
    expect(result.status).toBe(0);
  });

  it('does not count transactions the client abandoned', () => {
    expect(pods.healthy).toMatch(/^smtp_gateway_messages_total\{outcome="aborted",reason="client_[a-z]+"\} 2$/m);
    expect(analyse([pods.healthy], [pods.healthy]).out).toContain('stable: 20 messages answered');
  });

  it('refuses a canary that defers more, with both figures', () => {
    const result = analyse([pods.healthy], [pods.defersMore]);
    expect(result.out).toContain('the canary defers 20.00% of messages, the stable release 5.00%: 15.00 percentage points more, over the allowed 1');
    expect(result.out).not.toContain('refuses 20.00%');
    expect(result.status).toBe(1);
  });

  it('refuses a canary that refuses more, with both figures', () => {
    const result = analyse([pods.healthy], [pods.refusesMore]);
    expect(result.out).toContain('the canary refuses 20.00% of messages, the stable release 5.00%: 15.00 percentage points more, over the allowed 1');
    expect(result.status).toBe(1);
  });

  it('adds up every pod of a release and takes a wider margin when given one', () => {
    // canary: 40 answered, 5 deferred = 12.5 %, 7.5 points above the stable release's 5 %
    expect(analyse([pods.healthy], [pods.healthy, pods.defersMore], { maxIncrease: '7.5' }).status).toBe(0);
    const result = analyse([pods.healthy], [pods.healthy, pods.defersMore], { maxIncrease: '7' });
    expect(result.out).toContain('the canary defers 12.50% of messages');
    expect(result.status).toBe(1);
  });

  it('a better canary passes', () => {
    expect(analyse([pods.defersMore], [pods.healthy]).status).toBe(0);
  });

  it('says so when a release has too little traffic, rather than passing', () => {
    const idleCanary = analyse([pods.healthy], [pods.idle]);
    expect(idleCanary.out).toContain('canary: 0 messages answered (0 relayed), 0.00% deferred, 0.00% refused');
    expect(idleCanary.out).toContain('too little traffic to compare: the canary answered 0 messages, fewer than 10');
    expect(idleCanary.status).toBe(2);
    const quietStable = analyse([pods.healthy], [pods.healthy], { minMessages: '21' });
    expect(quietStable.out).toContain('too little traffic to compare: the stable answered 20 messages, fewer than 21');
    expect(quietStable.status).toBe(2);
  });

  it('fails on text that is not the gateway metrics, or on bad parameters', () => {
    const notMetrics = analyse([pods.healthy], ['<html>503 Service Unavailable</html>\n']);
    expect(notMetrics.err).toContain("no smtp_gateway_messages_total in the canary metrics: not the gateway's /metrics?");
    expect(notMetrics.status).toBe(3);
    const badMargin = analyse([pods.healthy], [pods.healthy], { maxIncrease: 'ten' });
    expect(badMargin.err).toContain("max_increase must be a number of percentage points, got 'ten'");
    expect(badMargin.status).toBe(3);
    expect(analyse([pods.healthy], [pods.healthy], { minMessages: '-1' }).status).toBe(3);
  });
});
