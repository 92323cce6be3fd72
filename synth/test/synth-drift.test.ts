/** The committed chart is exactly what synth writes, and synth writes the same bytes every time. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readmeWithValuesTable, writeChart } from '../main';
import { CHART, ROOT, tempDir } from './support';

describe('synth', () => {
  it('writes identical bytes on two runs', () => {
    const a = tempDir('synth-a');
    const b = tempDir('synth-b');
    const files = writeChart(a);
    writeChart(b);
    for (const file of files) expect(readFileSync(join(b, file)), file).toEqual(readFileSync(join(a, file)));
  });

  it('matches the committed charts/smtp-gateway (run `make synth` and commit if this fails)', () => {
    const fresh = tempDir('synth-fresh');
    const files = writeChart(fresh);
    const drifted = files.filter((file) => {
      try {
        return readFileSync(join(CHART, file), 'utf8') !== readFileSync(join(fresh, file), 'utf8');
      } catch {
        return true;
      }
    });
    expect(drifted).toEqual([]);
  });

  it("keeps the repository README's values table current", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readmeWithValuesTable(readme) === readme, 'README.md values table is stale: run `make synth`').toBe(true);
  });
});
