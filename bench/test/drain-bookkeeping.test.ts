/**
 * Found by the fuzzer's command storms: a transaction opened with MAIL FROM and
 * then given up without DATA (RSET, a new EHLO) must stop counting as in flight,
 * or every later SIGTERM waits out the whole grace period and ends by "aborting"
 * transactions that no longer exist. The gateway's own drain log says which.
 */
import { describe, expect, it } from 'vitest';
import { benchGatewayConfig, startGatewayProcess } from '../lib/gateway-process';
import { startRecordingUpstream } from '../../testkit/recording-upstream';
import { SmtpConnection, openSession } from '../../testkit/smtp-client';

describe('drain bookkeeping', () => {
  for (const giveUp of ['RSET', 'EHLO again.test', 'HELO again.test']) {
    it(`MAIL FROM then ${giveUp.split(' ')[0]}: nothing is in flight when SIGTERM comes, and the drain does not abort`, async () => {
      const upstream = await startRecordingUpstream();
      const gateway = await startGatewayProcess({ config: benchGatewayConfig(upstream, { drain: { delaySeconds: 0, graceSeconds: 20 } }), runtime: 'tsx' });
      try {
        const connection = await SmtpConnection.connect({ host: '127.0.0.1', port: gateway.ports.relay });
        expect((await openSession(connection)).ok).toBe(true);
        for (let i = 0; i < 3; i += 1) {
          expect((await connection.command('MAIL FROM:<a@bench.test>')).code).toBe(250);
          expect((await connection.command(giveUp)).code).toBe(250);
        }
        await connection.quit();
        await new Promise((resolve) => setTimeout(resolve, 200));
        gateway.signal('SIGTERM');
        const exit = await gateway.waitExit(30_000);
        const drainLogs = gateway.logs().filter((line) => line.msg === 'draining' || line.msg === 'drained');
        expect(exit.code).toBe(0);
        expect(drainLogs.find((line) => line.msg === 'draining')?.inFlight).toBe(0);
        expect(drainLogs.find((line) => line.msg === 'drained')?.aborted).toBe(false);
      } finally {
        await gateway.stop(5_000);
        await upstream.close();
      }
    });
  }
});
