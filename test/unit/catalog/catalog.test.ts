// The Catalog (src/catalog/catalog.ts): what a layer below site/ gets of a
// site's tables: the site's id and name, transactions, and events, with the
// daemon's log sink called after each one is recorded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ManualClock } from '../../../src/core/clock.ts';
import { Catalog } from '../../../src/catalog/catalog.ts';
import { recentEvents } from '../../../src/catalog/events.ts';
import { readMeta, writeMeta } from '../../../src/catalog/meta.ts';
import { Site } from '../../../src/site/site.ts';
import { tempDir } from '../../helpers.ts';

test('a catalog records events in order, calls its sink after each, and records none when read-only', () => {
  const tmp = tempDir();
  try {
    const path = join(tmp.path, 'catalog.db');
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const cat = Catalog.create(path, { id: 'I'.repeat(52), name: 'tokyo' }, clock);
    assert.equal(cat.siteId, 'I'.repeat(52));
    assert.equal(cat.siteName, 'tokyo');
    const seen: Array<[number, string]> = [];
    cat.onEvent = (at, e) => seen.push([at, e.kind]);
    cat.event({ kind: 'one', outcome: 'ok' });
    clock.advance(5);
    // An event in a transaction that fails is not recorded.
    assert.throws(() => cat.tx(() => {
      cat.event({ kind: 'rolled-back', outcome: 'info' });
      throw new Error('no');
    }));
    cat.tx(() => cat.event({ kind: 'two', outcome: 'warning', volume: 'app', detail: { n: 1 } }));
    assert.deepEqual(recentEvents(cat, 10, null).map((e) => e.kind), ['two', 'one']);
    assert.deepEqual(recentEvents(cat, 10, 'app').map((e) => [e.kind, JSON.parse(e.detail)]), [['two', { n: 1 }]]);
    assert.deepEqual(seen.filter(([, k]) => k !== 'rolled-back'), [[Date.UTC(2026, 0, 1), 'one'], [Date.UTC(2026, 0, 1) + 5, 'two']]);
    writeMeta(cat, { replica_root: '/srv/replicas' });
    cat.close();

    const ro = Catalog.open(path, { readOnly: true });
    try {
      assert.equal(ro.siteName, 'tokyo');
      assert.equal(readMeta(ro, 'replica_root'), '/srv/replicas');
      ro.event({ kind: 'three', outcome: 'ok' });
      assert.equal(recentEvents(ro, 10, null).length, 2, 'a read-only catalog records nothing');
    } finally {
      ro.close();
    }
  } finally {
    tmp.cleanup();
  }
});

test('a site\'s log sink gets one line per event its catalog records', () => {
  const tmp = tempDir();
  const site = Site.init(join(tmp.path, 'home'), 'osaka');
  try {
    const lines: string[] = [];
    site.logSink = { write: (l: string) => lines.push(l) };
    site.event({ kind: 'volume.create', volume: 'app', outcome: 'ok' });
    site.catalog.event({ kind: 'volume.remove', volume: 'app', outcome: 'ok' });
    assert.equal(lines.length, 2);
    assert.match(lines[0], /osaka.*volume\.create/);
    assert.match(lines[1], /volume\.remove/);
    site.logSink = undefined;
    site.event({ kind: 'gc', outcome: 'ok' });
    assert.equal(lines.length, 2, 'no sink, no line');
  } finally {
    site.close();
    tmp.cleanup();
  }
});
