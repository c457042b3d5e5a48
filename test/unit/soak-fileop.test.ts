// The soak's writes: one that changed nothing (nothing to delete in an empty replica a new secondary
// starts with) is said so, and the soak does not take the member's content for a write of its own
// (the seed 5 finding: an initialize over that empty replica was reported as dropping "writes").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyWrite, WRITE_OPS, WROTE_NOTHING } from '../soak/fileop.ts';
import { volumeDigest } from '../soak/world.ts';

test('a write answered as having changed nothing left the member as it was; any other changed it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-soak-fileop-'));
  try {
    const tree = join(dir, 'data');
    const image = join(dir, 'disk.img');
    mkdirSync(tree);
    writeFileSync(image, '');
    const members = [{ name: 'data', kind: 'tree' as const, path: tree }, { name: 'disk', kind: 'image' as const, path: image }];
    let nothing = 0;
    let i = 0;
    // From empty members (as a new replica is) through what the writes make of them.
    for (let round = 0; round < 3; round++) {
      for (const op of WRITE_OPS) {
        for (const m of members) {
          const before = volumeDigest(members);
          const did = applyWrite(m.kind, m.path, { op, pick: i * 7919, size: 100 + i, seed: `s${i}` });
          i++;
          const after = volumeDigest(members);
          if (WROTE_NOTHING.has(did)) {
            nothing++;
            assert.equal(after, before, `${op} on ${m.name} answered "${did}" but changed the member`);
          } else {
            assert.notEqual(after, before, `${op} on ${m.name} answered "${did}" and changed nothing`);
          }
        }
      }
    }
    assert.ok(nothing > 0, 'the empty members gave the writes nothing to act on at least once');
    assert.equal(applyWrite('tree', join(dir, 'gone'), { op: 'delete', pick: 0, size: 1, seed: 'x' }), 'member missing');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
