// Writes docs/errors.md from the error registry (src/core/errors.ts).
// A test checks the file is current, so every code stays documented.
import { writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERRORS } from '../src/core/errors.ts';

export function renderErrorsDoc(): string {
  const rows = Object.entries(ERRORS).map(([code, spec]) => `| \`${code}\` | ${spec.kind} | ${spec.exit} | ${spec.doc} |`);
  return [
    '# ferry errors',
    '',
    'Every error ferry reports carries a stable code, a kind and an exit status.',
    'Retries look only at the kind: after a `transient` error a scheduled job is tried again after a backoff (5 s, 10 s, ... up to',
    '5 min, with jitter); after any other it waits at least for its next period, so nothing is retried every tick',
    '(docs/operator-guide.md, "Retries and backoff").',
    'With `--json`, errors are printed as `{"error": {"code", "kind", "message", "details"}}`.',
    '',
    'Exit status 8 is not an error: the command completed but reported warnings',
    '(for example files that vanished or could not be read during a snapshot).',
    '',
    '| code | kind | exit | meaning and what to do |',
    '|---|---|---|---|',
    ...rows,
    '',
    '_Generated from src/core/errors.ts by `node scripts/gen-errors-doc.ts`._',
    '',
  ].join('\n');
}

if (import.meta.main) {
  const root = dirname(dirname(fileURLToPath(import.meta.url)));
  writeFileSync(join(root, 'docs', 'errors.md'), renderErrorsDoc());
}
