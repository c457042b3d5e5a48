// The layers (docs/design.md, "Layers"): each imports only from those before it, with static, dynamic
// and type-only imports alike:
//   core ← store ← snapshot ← catalog ← replication ← transport ← site ← {dr, config} ← app ← cli
// An import that still had to point up would be listed below by file and target: the test fails on
// any other, and on a listed one that is gone (so the list only shrinks). The list is empty.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { specifiers } from './imports.ts';
import { ROOT } from '../helpers.ts';

const SRC = join(ROOT, 'src');
const ORDER: Record<string, number> = { core: 0, store: 1, snapshot: 2, catalog: 3, replication: 4, transport: 5, site: 6, dr: 7, config: 7, app: 8, cli: 9 };

/** Upward imports not yet removed: "file -> target layer/module". */
const KNOWN_UP = new Set<string>(
  // Upward imports still to remove, as "file -> target" (from this test's failure message); none now.
  [],
);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('no import points up the layer order, beyond the ones listed as not yet removed', () => {
  const found = new Set<string>();
  const unknownLayer: string[] = [];
  for (const file of sources(SRC)) {
    const rel = relative(SRC, file).split(sep).join('/');
    const from = rel.split('/')[0];
    if (!(from in ORDER)) {
      unknownLayer.push(rel);
      continue;
    }
    for (const spec of specifiers(file)) {
      if (!spec.startsWith('.')) continue;
      const target = relative(SRC, resolve(dirname(file), spec)).split(sep).join('/');
      const to = target.split('/')[0];
      if (ORDER[to] > ORDER[from]) found.add(`${rel} -> ${target}`);
    }
  }
  assert.deepEqual(unknownLayer, [], 'a directory of src/ that is no layer');
  const added = [...found].filter((x) => !KNOWN_UP.has(x)).sort();
  const gone = [...KNOWN_UP].filter((x) => !found.has(x)).sort();
  assert.deepEqual(added, [], `imports that point up the layers:\n${added.map((x) => `    '${x}',`).join('\n')}`);
  assert.deepEqual(gone, [], `listed as pointing up but gone (remove them from KNOWN_UP):\n${gone.join('\n')}`);
});

// Issue 12: no source file over 600 lines, so a module stays one concern a reader can hold.
const MAX_LINES = 600;

test(`no file under src/ has more than ${MAX_LINES} lines`, () => {
  const over = sources(SRC)
    .map((file) => ({ file: relative(SRC, file).split(sep).join('/'), lines: readFileSync(file, 'utf8').split('\n').length - 1 }))
    .filter((f) => f.lines > MAX_LINES)
    .map((f) => `${f.file}: ${f.lines} lines`);
  assert.deepEqual(over, [], `split these into modules of one concern each:\n${over.join('\n')}`);
});
