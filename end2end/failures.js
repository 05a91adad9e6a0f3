// Prints one short paragraph per failed Playwright test (from the JSON report), so the end of
// a long CI log says which step failed and why. Used by scripts/test.sh.
const fs = require('fs');
const path = require('path');

const file = path.join(__dirname, 'test-results', 'results.json');
if (!fs.existsSync(file)) {
  console.log('  (no Playwright report at end2end/test-results/results.json)');
  process.exit(0);
}
const plain = (s) => String(s).replace(/\u001b\[[0-9;]*m/g, '');
const report = JSON.parse(fs.readFileSync(file, 'utf8'));
const lines = [];
(function walk(suite) {
  for (const s of suite.suites || []) walk(s);
  for (const spec of suite.specs || []) {
    for (const t of spec.tests || []) {
      const bad = (t.results || []).filter((r) => !['passed', 'skipped'].includes(r.status));
      for (const r of bad) {
        const error = r.error || (r.errors || [])[0] || {};
        const where = error.location ? `${path.basename(error.location.file)}:${error.location.line}` : `${spec.file}:${spec.line}`;
        const message = plain(error.message || r.status).split('\n').filter((l) => l.trim()).slice(0, 8);
        lines.push(`  ${spec.title} (${where})`, ...message.map((l) => `      ${l}`));
      }
    }
  }
})(report);
console.log(lines.length ? lines.join('\n') : '  (the report lists no failed test)');
