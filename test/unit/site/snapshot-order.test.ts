// `latest` and the parent of the next snapshot at one site: kept writes
// (replica-writes-*, failback-kept-*) are never either, and their names are
// ferry's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSnapshot, resolveSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import { withLocalSite } from '../local-site.ts';

test('kept writes are never latest, and their names are reserved', async () => {
  await withLocalSite('kept', async ({ dir, site, pool }) => {
    const data = join(dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'a.txt'), 'one\n');
    createVolume(site, 'vol', { members: [{ kind: 'tree', path: data }] });
    const s1 = (await createSnapshot(site, 'vol', { pool })).snapshot;
    await assert.rejects(createSnapshot(site, 'vol', { pool, name: 'failback-kept-mine' }), /ferry's own/);
    await assert.rejects(createSnapshot(site, 'vol', { pool, name: 'replica-writes-x' }), /ferry's own/);
    writeFileSync(join(data, 'stray.txt'), 'kept\n');
    const kept = (await createSnapshot(site, 'vol', { pool, name: 'failback-kept-2026', keptWrites: true })).snapshot;
    assert.equal(kept.parent, s1.id);
    assert.equal(resolveSnapshot(site, 'vol', 'latest').id, s1.id);
    assert.equal(resolveSnapshot(site, 'vol', 'failback-kept-2026').id, kept.id, 'restorable by name');
    const next = (await createSnapshot(site, 'vol', { pool })).snapshot;
    assert.equal(next.parent, s1.id, 'a kept snapshot is never a parent');
  });
});
