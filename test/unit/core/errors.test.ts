import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS, FerryError, wrapIoError } from '../../../src/core/errors.ts';
import { renderErrorsDoc } from '../../../scripts/gen-errors-doc.ts';
import { ROOT } from '../../helpers.ts';

test('docs/errors.md documents every error code (regenerate with node scripts/gen-errors-doc.ts)', () => {
  assert.equal(readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8'), renderErrorsDoc());
});

test('errors are JSON-serialisable with code, kind and message', () => {
  const e = new FerryError('VOLUME_NOT_FOUND', 'no volume x', { details: { volume: 'x' } });
  assert.deepEqual(JSON.parse(JSON.stringify(e)), { code: 'VOLUME_NOT_FOUND', kind: 'usage', message: 'no volume x', details: { volume: 'x' } });
  assert.equal(e.exitCode, ERRORS.VOLUME_NOT_FOUND.exit);
});

test('system errors become errors that say what to do', () => {
  const full = wrapIoError(Object.assign(new Error('nope'), { code: 'ENOSPC' }), 'writing pack');
  assert.equal(full.code, 'NO_SPACE');
  assert.match(full.message, /disk is full; free space/);
  assert.equal(wrapIoError(Object.assign(new Error('x'), { code: 'EACCES' }), 'reading f').code, 'IO');
});
