/**
 * The gateway's stdout is a JSON-lines log stream that collectors parse line by
 * line: under concurrent load nothing else may appear in it (Node prints some
 * warnings, such as MaxListenersExceededWarning, as plain text).
 */
import { describe, expect, it } from 'vitest';
import { check } from '../lib/checker';
import { benchGatewayConfig, startGatewayProcess } from '../lib/gateway-process';
import { runLoad } from '../lib/load-generator';
import { startSmtpSink } from '../../testkit/smtp-sink';

describe('log stream', () => {
  it('stays JSON lines with 50 transactions in flight at once', async () => {
    const sink = await startSmtpSink();
    const gateway = await startGatewayProcess({ config: benchGatewayConfig(sink), runtime: 'tsx' });
    try {
      const runId = `log-${Date.now()}`;
      const load = await runLoad({ target: () => ({ host: '127.0.0.1', port: gateway.ports.relay }), concurrency: 50, messageBytes: 2048, maxMessages: 300, runId });
      expect(check(load.outcomes, await sink.deliveries(), runId)).toMatchObject({ accepted: 300, delivered: 300, ok: true });
      const logs = gateway.logs();
      expect(logs.filter((line) => line.msg === 'transaction')).toHaveLength(300);
      expect(logs.filter((line) => line.msg === 'unparsed')).toEqual([]);
    } finally {
      await gateway.stop(10_000);
      await sink.stop();
    }
  });
});
