/**
 * The one vocabulary for a message's outcome (relay/outcome.ts): a reply and
 * its labels never disagree about whether the refusal is temporary.
 */
import { describe, expect, it } from 'vitest';
import { aborted, deferred, RefusalError, rejected } from '../src/relay/outcome';

describe('outcome', () => {
  it('pairs the reply with the labels smtp_gateway_messages_total counts', () => {
    expect(rejected({ code: 550, status: '5.7.1', text: 'no' }, 'relay_denied')).toEqual({
      reply: { code: 550, status: '5.7.1', text: 'no' },
      labels: { outcome: 'rejected', reason: 'relay_denied' },
      upstream: undefined,
    });
    expect(deferred({ code: 452, status: '4.3.1', text: 'full' }, 'spool_full').labels).toEqual({ outcome: 'deferred', reason: 'spool_full' });
    expect(aborted({ code: 421, status: '4.4.2', text: 'gone' }, 'client_disconnect').labels).toEqual({ outcome: 'aborted', reason: 'client_disconnect' });
  });

  it('refuses a reply whose code or status contradicts the outcome, naming both', () => {
    expect(() => rejected({ code: 451, status: '4.7.1', text: 'later' }, 'relay_denied')).toThrow(
      'reply 451 4.7.1 for reason relay_denied: expected a 5xx code with a 5.x.x status',
    );
    expect(() => deferred({ code: 550, status: '5.7.1', text: 'no' }, 'rate_limited')).toThrow(/reply 550 5\.7\.1 for reason rate_limited: expected a 4xx/);
    expect(() => deferred({ code: 451, status: '5.7.1', text: 'mixed' }, 'rate_limited')).toThrow(/expected a 4xx code with a 4\.x\.x status/);
  });

  it('RefusalError carries the outcome through a stream error, with its text as the message', () => {
    const refusal = rejected({ code: 550, status: '5.7.1', text: 'Header From refused' }, 'header_from');
    const error = new RefusalError(refusal);
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toBe('Header From refused');
    expect(error.outcome).toBe(refusal);
  });
});
