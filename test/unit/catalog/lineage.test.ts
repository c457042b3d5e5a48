// A deleted snapshot keeps its place in the lineage (catalog/snapshots.ts, snapshot_gone): the
// snapshots that name it as their parent still descend from what it descended from. Found by the
// soak (seed 1380349686): a primary whose clock was set back deleted the snapshot that linked what
// it took after the step to its mirror's base, and the mirror refused every update as older than
// its base. The places never chain (each points to the nearest snapshot held) and go an hour after
// nothing names them, so they stay as few as the snapshots here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ManualClock } from '../../../src/core/clock.ts';
import { Catalog } from '../../../src/catalog/catalog.ts';
import { compareSnapshots, deleteSnapshotRow, deleteSnapshotRowsOf, descendsFrom, findSnapshot, insertSnapshotRow, lineage, recordedOrder, recordLineageLink } from '../../../src/catalog/snapshots.ts';
import { tempDir } from '../../helpers.ts';

const HERE = 'H'.repeat(52);

function withCatalog(fn: (cat: Catalog, clock: ManualClock) => void): void {
  const tmp = tempDir();
  try {
    const clock = new ManualClock(1_000_000);
    const cat = Catalog.create(join(tmp.path, 'catalog.db'), { id: HERE, name: 'here' }, clock);
    cat.db.run("INSERT INTO volumes (name, role, created_at) VALUES ('vol', 'primary', 0)");
    try {
      fn(cat, clock);
    } finally {
      cat.close();
    }
  } finally {
    tmp.cleanup();
  }
}

/** A snapshot taken here at `time` (ids made to sort as the times do), child of `parent`. */
function take(cat: Catalog, n: number, time: number, parent: string | null): string {
  const id = `01M9${String(n).padStart(22, '0')}`;
  cat.tx(() => insertSnapshotRow(cat, { id, volume: 'vol', name: null, time, origin: HERE, parent, manifest: 'f'.repeat(64), stats: {} }));
  return id;
}

const gone = (cat: Catalog) => cat.db.all<{ id: string; parent: string | null }>('SELECT id, parent FROM snapshot_gone ORDER BY id').map((r) => ({ id: r.id, parent: r.parent }));
const rec = (cat: Catalog, id: string) => findSnapshot(cat, 'vol', id)!;

test('a snapshot taken after the clock was set back stays newer than the base when the snapshots between are deleted', () => {
  withCatalog((cat, clock) => {
    const base = take(cat, 9, 9000, null);
    // The clock is set back: what follows carries older times (and ids), each the child of the one before.
    const s1 = take(cat, 1, 1000, base);
    const s2 = take(cat, 2, 2000, s1);
    const s3 = take(cat, 3, 3000, s2);
    const s4 = take(cat, 4, 4000, s3);
    deleteSnapshotRow(cat, 'vol', s2);
    deleteSnapshotRow(cat, 'vol', s1);
    assert.ok(descendsFrom(cat, s4, base) && descendsFrom(cat, s3, base), 'through the deleted snapshots');
    assert.ok(!descendsFrom(cat, base, s3));
    assert.ok(compareSnapshots(cat, rec(cat, s4), rec(cat, base)) > 0, 'newer by lineage, older by the clock');
    assert.deepEqual(lineage(cat, 'vol', s4), [s4, s3, base], 'the lineage names only snapshots held here');
    // The places never chain: both point to the base, the nearest ancestor held.
    assert.deepEqual(gone(cat), [{ id: s1, parent: base }, { id: s2, parent: base }]);
    // Deleting the snapshot both point to moves them down to its parent.
    deleteSnapshotRow(cat, 'vol', s3);
    assert.ok(descendsFrom(cat, s4, base));
    assert.deepEqual(gone(cat).map((g) => g.parent), [base, base, base]);
    // An hour on, only the place a snapshot here names is kept (s3's: s4's parent).
    clock.advance(3600_001);
    const s5 = take(cat, 5, 5000, s4);
    deleteSnapshotRow(cat, 'vol', s5);
    assert.deepEqual(gone(cat).map((g) => g.id), [s3, s5], 's1 and s2 went; s5 is an hour from going');
    assert.ok(descendsFrom(cat, s4, base));
    // A snapshot recorded again (received back) is held: its place goes.
    take(cat, 3, 3000, s2);
    assert.deepEqual(gone(cat).map((g) => g.id), [s5]);
    deleteSnapshotRowsOf(cat, 'vol');
    assert.deepEqual(gone(cat), []);
  });
});

test('a secondary records where a parent it never received descends from, as the source said, and only toward a snapshot it holds', () => {
  withCatalog((cat) => {
    const applied = take(cat, 1, 1000, null);
    const never = `01M9${'7'.repeat(22)}`;
    recordLineageLink(cat, 'vol', never, `01M9${'8'.repeat(22)}`); // not held here: nothing recorded
    assert.deepEqual(gone(cat), []);
    recordLineageLink(cat, 'vol', never, applied);
    recordLineageLink(cat, 'vol', applied, applied); // a snapshot held is no place
    const next = take(cat, 2, 500, never);
    assert.ok(descendsFrom(cat, next, applied));
    assert.deepEqual(gone(cat), [{ id: never, parent: applied }]);
  });
});

// The soak's replay of seed 1380349686 (step 1022): the site took its mirror's base itself, took the
// volume over later at a snapshot of another site whose ancestors it never held, and took a new
// snapshot after its clock was set back. No lineage joins the two here, and by its clock the new one
// was older. A site records its own snapshots in the order it takes them, whatever its clock says.
test('two snapshots this site took, with no lineage between them here, are in the order it took them, not by its clock', () => {
  withCatalog((cat) => {
    const base = take(cat, 9, 9000, null);
    const elsewhere = `01M9${'5'.repeat(22)}`; // a snapshot of another site, never held here
    const after = take(cat, 1, 1000, elsewhere);
    assert.ok(!descendsFrom(cat, after, base));
    assert.ok(compareSnapshots(cat, rec(cat, after), rec(cat, base)) > 0, 'taken after the base');
    assert.ok(compareSnapshots(cat, rec(cat, base), rec(cat, after)) < 0);
    // Another site's snapshots are still ordered by that site's clock (this site may have received them in any order).
    const OTHER = 'O'.repeat(52);
    const late = `01M9${'3'.repeat(22)}`;
    const early = `01M9${'2'.repeat(22)}`;
    cat.tx(() => insertSnapshotRow(cat, { id: late, volume: 'vol', name: null, time: 3000, origin: OTHER, parent: null, manifest: 'f'.repeat(64), stats: {} }));
    cat.tx(() => insertSnapshotRow(cat, { id: early, volume: 'vol', name: null, time: 2000, origin: OTHER, parent: null, manifest: 'f'.repeat(64), stats: {} }));
    assert.ok(compareSnapshots(cat, rec(cat, late), rec(cat, early)) > 0);
  });
});

test('the order a site records its snapshots in is never reused: a snapshot recorded after one deleted last comes after it', () => {
  withCatalog((cat) => {
    const a = take(cat, 1, 1000, null);
    const b = take(cat, 2, 2000, a);
    const seqB = recordedOrder(cat, b);
    deleteSnapshotRow(cat, 'vol', b);
    const c = take(cat, 3, 3000, a);
    assert.ok(recordedOrder(cat, c) > seqB, `${recordedOrder(cat, c)} after ${seqB}`);
    assert.ok(recordedOrder(cat, a) < recordedOrder(cat, c));
  });
});
