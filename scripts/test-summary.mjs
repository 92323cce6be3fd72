#!/usr/bin/env node
// Adds up the reports `make test` leaves in .test-results/ (vitest JSON, helm-unittest
// JUnit) into one closing line, so a reader of CI output sees every suite's count at once.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2] ?? '.test-results';
let passed = 0;
let failed = 0;
let skipped = 0;
const rows = [];
for (const name of readdirSync(dir).sort()) {
  const text = readFileSync(join(dir, name), 'utf8');
  let p = 0, f = 0, s = 0;
  if (name.endsWith('.json')) {
    const report = JSON.parse(text);
    p = report.numPassedTests;
    f = report.numFailedTests;
    s = report.numPendingTests + report.numTodoTests;
  } else if (name.endsWith('.xml')) {
    for (const [, attrs] of text.matchAll(/<testsuite\s([^>]*)>/g)) {
      const num = (key) => Number(new RegExp(`\\b${key}="(\\d+)"`).exec(attrs)?.[1] ?? 0);
      const bad = num('failures') + num('errors');
      s += num('skipped');
      f += bad;
      p += num('tests') - bad - num('skipped');
    }
  } else continue;
  rows.push(`  ${name.replace(/\.(json|xml)$/, '').padEnd(16)} ${p} passed, ${f} failed${s ? `, ${s} skipped` : ''}`);
  passed += p;
  failed += f;
  skipped += s;
}
console.log(rows.join('\n'));
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
