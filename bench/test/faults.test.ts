/**
 * Short versions of the fault scenarios (`make test-faults` runs them long):
 * whatever breaks, no accepted message is lost or delivered twice, the gateway
 * never crashes, and a drained gateway exits 0.
 */
import { describe, expect, it } from 'vitest';
import { SCENARIOS, runScenario } from '../lib/fault-scenarios';

describe('faults under load (short)', () => {
  for (const name of Object.keys(SCENARIOS)) {
    it(`${name}: lost = 0, duplicated = 0, no crash, clean exit`, { timeout: 90_000 }, async () => {
      const result = await runScenario(name, { durationMs: 4_000, concurrency: 20 });
      const summary = { ...result.report, examples: undefined, problems: result.problems, details: result.failureDetails };
      expect(result.problems, JSON.stringify(summary)).toEqual([]);
      expect(result.report.lost, JSON.stringify(summary)).toBe(0);
      expect(result.report.duplicated, JSON.stringify(summary)).toBe(0);
      expect(result.report.unacknowledged, JSON.stringify(summary)).toBe(0);
      expect(result.report.unknown).toBe(0);
      expect(result.exits.every((exit) => exit === 0)).toBe(true);
    });
  }
});
