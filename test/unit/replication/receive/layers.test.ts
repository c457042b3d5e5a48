// The receiving end sits in the replication layer (docs/design.md, "Layers"): every module under
// src/replication/receive/ imports only from core, store, snapshot, catalog and replication, with
// static, dynamic and type-only imports alike; what it needs of the site comes through ReceiveHost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { specifiers } from '../../imports.ts';
import { ROOT } from '../../../helpers.ts';

const SRC = join(ROOT, 'src');
const DIR = join(SRC, 'replication', 'receive');
const BELOW = ['core', 'store', 'snapshot', 'catalog', 'replication'];

test('replication/receive imports nothing above the replication layer', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length >= 5, `modules found: ${files.join(', ')}`);
  const up: string[] = [];
  for (const f of files) {
    for (const spec of specifiers(join(DIR, f))) {
      if (!spec.startsWith('.')) continue; // node: modules
      const layer = relative(SRC, resolve(dirname(join(DIR, f)), spec)).split(sep)[0];
      if (!BELOW.includes(layer)) up.push(`${f} imports ${spec} (layer ${layer})`);
    }
  }
  assert.deepEqual(up, []);
});
