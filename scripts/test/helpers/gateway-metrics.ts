/**
 * Real /metrics text for the canary analysis tests: a gateway relaying to a real upstream is sent mail that
 * ends as many times relayed, deferred (the upstream answers 451 to a recipient) and rejected (a denied
 * recipient domain) as asked, then scraped over HTTP from its ops port as a pod's would be.
 */
import nodemailer from 'nodemailer';
import { openConnection } from '../../../testkit/smtp-client';
import { startTestGateway } from '../../../testkit/test-gateway';
import { startRecordingUpstream } from '../../../testkit/recording-upstream';

export interface Outcomes {
  readonly relayed: number;
  readonly deferred?: number;
  readonly rejected?: number;
  /** Transactions the client gives up (RSET after RCPT): the analysis must not count them. */
  readonly aborted?: number;
}

const DEFERRED = 'later@example.org';

/** Send the mail, scrape GET /metrics, stop everything; returns the exposition text. */
export async function scrapeGatewayMetrics(outcomes: Outcomes): Promise<string> {
  const upstream = await startRecordingUpstream({ deferRecipient: DEFERRED });
  const gw = await startTestGateway({ upstreamPort: upstream.port, policy: { recipientDomains: { deny: ['denied.example'] } } });
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: gw.relayPort, ignoreTLS: true });
  try {
    const send = (to: string, count = 0) =>
      Array.from({ length: count }, (_, i) => client.sendMail({ from: 'app@example.com', to, subject: `m${i}`, text: 'hello' }).then(() => 'sent' as const, () => 'refused' as const));
    const sent = await Promise.all(send('user@example.org', outcomes.relayed));
    const refused = await Promise.all([...send(DEFERRED, outcomes.deferred), ...send('user@denied.example', outcomes.rejected)]);
    if (sent.includes('refused') || refused.includes('sent')) throw new Error('the gateway answered a test message other than planned');
    for (let i = 0; i < (outcomes.aborted ?? 0); i++) await abortedTransaction(gw.relayPort);
    // A transaction is counted when its session ends, a moment after the client's last reply.
    const expected = outcomes.relayed + (outcomes.deferred ?? 0) + (outcomes.rejected ?? 0) + (outcomes.aborted ?? 0);
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(`http://127.0.0.1:${gw.opsPort}/metrics`);
      if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`);
      const text = await response.text();
      if (countMessages(text) === expected) return text;
      if (attempt === 50) throw new Error(`the gateway counted ${countMessages(text)} transactions, not ${expected}:\n${text}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    client.close();
    await gw.close();
    await upstream.close();
  }
}

const countMessages = (text: string) =>
  [...text.matchAll(/^smtp_gateway_messages_total\{[^}]*\} (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0);

/** MAIL, RCPT, then RSET: a transaction the client abandons. */
async function abortedTransaction(port: number): Promise<void> {
  const connection = await openConnection(port);
  await connection.command('EHLO client.test');
  await connection.command('MAIL FROM:<app@example.com>');
  await connection.command('RCPT TO:<user@example.org>');
  await connection.command('RSET');
  await connection.command('QUIT');
  await connection.waitClosed();
}
