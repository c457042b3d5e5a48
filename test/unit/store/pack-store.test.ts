import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, statSync, truncateSync, unlinkSync, writeFileSync, writeSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FerryError, isFerryError } from '../../../src/core/errors.ts';
import { hashBytes, type ObjectId } from '../../../src/core/ids.ts';
import {
  PACK_HEADER_SIZE,
  RECORD_HEADER_SIZE,
  RECORD_OVERHEAD,
  nodePackFileIo,
  scanPack,
  type PackFileIo,
} from '../../../src/store/pack.ts';
import { PackStore } from '../../../src/store/pack-store.ts';
import { CODEC_NONE, CODEC_ZSTD } from '../../../src/store/types.ts';
import { runObjectStoreConformance } from './conformance.ts';
import { compressibleBytes, flipByte, makeTestStore, noSyncIo, pseudoRandomBytes, type TestStoreHome } from './helpers.ts';

function locate(store: PackStore, id: ObjectId): { path: string; offset: number; pack: string } {
  for (const o of store.iterateObjects()) if (o.id === id) return { path: store.packPath(o.packName), offset: o.offset, pack: o.packName };
  throw new Error(`object ${id} is not indexed`);
}

function packFiles(home: TestStoreHome): string[] {
  const root = join(home.dir, 'store', 'packs');
  return readdirSync(root).flatMap((sub) => readdirSync(join(root, sub)).map((f) => f.replace(/\.pack$/, ''))).sort();
}

runObjectStoreConformance('PackStore', () => {
  const home = makeTestStore({ packTargetSize: 256 << 10 });
  return {
    get store() {
      return home.store;
    },
    reopen: () => home.reopen(),
    corrupt: (id) => {
      const at = locate(home.store, id);
      flipByte(at.path, at.offset + RECORD_HEADER_SIZE + 7);
    },
    dispose: () => home.dispose(),
  };
});

describe('PackStore', () => {
  test('a flipped byte in a stored object: get throws OBJECT_CORRUPT naming the pack and offset; verifyAll reports exactly that id', () => {
    const home = makeTestStore();
    try {
      const datas = Array.from({ length: 12 }, (_, i) => pseudoRandomBytes(2000 + i, `flip${i}`));
      const ids = datas.map((d) => home.store.put('chunk', d).id);
      home.store.flush();
      const victim = ids[5];
      const at = locate(home.store, victim);
      flipByte(at.path, at.offset + RECORD_HEADER_SIZE + 1000);

      assert.throws(
        () => home.store.get(victim),
        (err: unknown) => isFerryError(err, 'OBJECT_CORRUPT') && err.message.includes(at.pack) && err.message.includes(`offset ${at.offset}`),
      );
      ids.filter((id) => id !== victim).forEach((id) => assert.deepEqual(home.store.get(id), datas[ids.indexOf(id)]));

      const reported: string[] = [];
      const report = home.store.verifyAll((bad) => reported.push(bad.id));
      assert.equal(report.checked, 12);
      assert.deepEqual(reported, [victim]);
      assert.deepEqual(report.bad.map((b) => [b.id, b.pack]), [[victim, at.pack]]);
      assert.equal(home.store.verifyObject(victim)?.reason, 'record CRC mismatch');
      assert.equal(home.store.verifyObject(ids[0]), undefined);
    } finally {
      home.dispose();
    }
  });

  test('the lighter reads (a sender\'s CRC-only readStored, the apply\'s getUnhashed) still refuse a flipped byte', () => {
    const home = makeTestStore();
    try {
      const plain = pseudoRandomBytes(5000, 'light1');
      const packed = compressibleBytes(20000, 'light2');
      const ip = home.store.put('chunk', plain).id;
      const iz = home.store.put('chunk', packed).id;
      home.store.flush();
      // intact: the same bytes as the full reads
      assert.deepEqual(home.store.readStored(ip, { crcOnly: true }).stored, home.store.readStored(ip).stored);
      assert.deepEqual(home.store.getUnhashed(iz), packed);
      for (const id of [ip, iz]) {
        const at = locate(home.store, id);
        flipByte(at.path, at.offset + RECORD_HEADER_SIZE + 3);
        assert.throws(() => home.store.readStored(id, { crcOnly: true }), (e: unknown) => isFerryError(e, 'OBJECT_CORRUPT') && /CRC/.test(e.message));
        assert.throws(() => home.store.getUnhashed(id), (e: unknown) => isFerryError(e, 'OBJECT_CORRUPT'));
      }
    } finally {
      home.dispose();
    }
  });

  test('a damaged record header and a forged index length are caught', () => {
    const home = makeTestStore();
    try {
      const a = pseudoRandomBytes(3000, 'h1');
      const b = pseudoRandomBytes(3000, 'h2');
      const ia = home.store.put('chunk', a).id;
      const ib = home.store.put('chunk', b).id;
      home.store.flush();
      const at = locate(home.store, ia);
      flipByte(at.path, at.offset + 20); // inside the id in the record header
      assert.throws(() => home.store.get(ia), (e: unknown) => isFerryError(e, 'OBJECT_CORRUPT'));
      // an index row that claims a different raw length than the record
      home.db.run('UPDATE objects SET raw_length = 100 WHERE id = ?', Buffer.from(ib, 'hex'));
      assert.throws(() => home.store.get(ib), (e: unknown) => isFerryError(e, 'OBJECT_CORRUPT') && /differs from the index/.test(e.message));
    } finally {
      home.dispose();
    }
  });

  test('packs seal at the target size; index rows appear only at seal or flush', () => {
    const home = makeTestStore({ packTargetSize: 20_000 });
    try {
      const ids: ObjectId[] = [];
      for (let i = 0; i < 9; i++) ids.push(home.store.put('chunk', pseudoRandomBytes(4000, `seal${i}`)).id);
      // 4050-byte records: a pack seals once it passes 20000 bytes, i.e. after 5 records
      let st = home.store.stats();
      assert.equal(st.packs, 1);
      assert.equal(st.objects, 5);
      assert.equal(st.pendingObjects, 4);
      assert.equal(home.store.info(ids[8])?.pack, 0);
      home.store.flush();
      st = home.store.stats();
      assert.deepEqual([st.packs, st.objects, st.pendingObjects], [2, 9, 0]);
      assert.equal(st.rawBytes, 9 * 4000);
      assert.equal(st.storedBytes, 2 * PACK_HEADER_SIZE + 9 * (4000 + RECORD_OVERHEAD));
      assert.deepEqual(packFiles(home), home.store.listPacks().map((p) => p.name).sort());
      home.store.flush(); // nothing pending: no empty pack
      assert.equal(home.store.stats().packs, 2);
    } finally {
      home.dispose();
    }
  });

  test('pack bytes follow the documented format (golden)', () => {
    let n = 0;
    const home = makeTestStore({ random: (k) => Buffer.alloc(k, ++n), zstdLevel: 0 });
    try {
      const data = Buffer.from('hello, ferry');
      const { id } = home.store.put('tree', data);
      home.store.flush();
      const [pack] = home.store.listPacks();
      const bytes = readFileSync(home.store.packPath(pack.name));
      const expectHeader = '4645525259504b00' + '01000000' + '00000000';
      const expectRecordHeader = '46524543' + '02' + '00' + '0c000000' + '0c000000' + id;
      assert.equal(bytes.subarray(0, 16).toString('hex'), expectHeader);
      assert.equal(bytes.subarray(16, 16 + RECORD_HEADER_SIZE).toString('hex'), expectRecordHeader);
      assert.equal(bytes.subarray(16 + RECORD_HEADER_SIZE, 16 + RECORD_HEADER_SIZE + 12).toString(), 'hello, ferry');
      assert.equal(bytes.length, 16 + RECORD_OVERHEAD + 12);
      assert.equal(pack.size, bytes.length);
      const scanned: string[] = [];
      const scan = scanPack(home.store.packPath(pack.name), (r) => scanned.push(r.id.toString('hex')));
      assert.deepEqual(scan, { records: 1, size: bytes.length, goodEnd: bytes.length });
      assert.deepEqual(scanned, [id]);
      assert.equal(bytes.readUInt32LE(bytes.length - 4), crc32(bytes.subarray(16, bytes.length - 4)));
      // the whole file, byte for byte: a change here is a format change (bump PACK_VERSION)
      assert.equal(
        bytes.toString('hex'),
        '4645525259504b00' + '01000000' + '00000000' + // pack header
          '46524543' + '02' + '00' + '0c000000' + '0c000000' + // record magic, kind tree, codec none, raw 12, stored 12
          'b80f11e0d1918b4f92899ff33d5c2b2742ac373681eb7956fe55f7f01ea8ec30' + // id: BLAKE3-256 of 'hello, ferry'
          '68656c6c6f2c206665727279' + // 'hello, ferry'
          '82b72daf', // CRC32
      );
    } finally {
      home.dispose();
    }
  });

  test('scanPack stops at a torn tail and at a bad CRC, reporting the offset', () => {
    const home = makeTestStore();
    try {
      const ids = [0, 1, 2].map((i) => home.store.put('chunk', pseudoRandomBytes(1000, `scan${i}`)).id);
      home.store.flush();
      const at2 = locate(home.store, ids[2]);
      const at1 = locate(home.store, ids[1]);
      const size = statSync(at2.path).size;
      truncateSync(at2.path, size - 10);
      let r = scanPack(at2.path);
      assert.equal(r.records, 2);
      assert.equal(r.badOffset, at2.offset);
      assert.equal(r.goodEnd, at2.offset);
      assert.match(r.reason!, /torn/);
      flipByte(at1.path, at1.offset + RECORD_HEADER_SIZE + 5);
      r = scanPack(at1.path);
      assert.equal(r.records, 1);
      assert.equal(r.badOffset, at1.offset);
      assert.equal(r.reason, 'record CRC mismatch');
    } finally {
      home.dispose();
    }
  });

  test('durable() over many ids (batched lookups): in order, duplicates and unknown ids included, a pack whose file is gone counted out', () => {
    const home = makeTestStore({ packTargetSize: 64 << 10 });
    try {
      const ids = Array.from({ length: 600 }, (_, i) => home.store.put('chunk', pseudoRandomBytes(700, `d${i}`)).id);
      home.store.flush();
      const never = Array.from({ length: 40 }, (_, i) => hashBytes(Buffer.from(`never ${i}`)));
      // 600 stored, 40 never stored, interleaved, with repeats: more than two statements' worth
      const asked = ids.flatMap((id, i) => (i % 15 === 0 ? [id, never[i / 15], id] : [id]));
      assert.deepEqual(home.store.durable(asked), asked.map((id) => !never.includes(id)));
      assert.deepEqual(home.store.durable([]), []);
      assert.deepEqual(home.store.durable([never[0]]), [false]);
      // a pack's file gone: its objects are not durable (marked lost), the others still are
      const packs = home.store.listPacks();
      assert.ok(packs.length >= 5, `several packs (${packs.length})`);
      unlinkSync(home.store.packPath(packs[1].name));
      const inLost = new Set(home.db.all<{ id: Uint8Array }>('SELECT id FROM objects WHERE pack = ?', packs[1].id).map((r) => Buffer.from(r.id).toString('hex')));
      assert.ok(inLost.size > 0);
      assert.deepEqual(home.store.durable(ids), ids.map((id) => !inLost.has(id)));
      assert.deepEqual(home.store.durable(ids), ids.map((id) => !inLost.has(id)), 'asked again: the lost mark holds');
    } finally {
      home.dispose();
    }
  });

  test('recover(): deletes an orphan unindexed pack, reports a truncated and a missing pack, finishes obsolete ones, leaves stray files', () => {
    const home = makeTestStore({ packTargetSize: 6000 });
    try {
      const datas = Array.from({ length: 6 }, (_, i) => pseudoRandomBytes(3000, `rec${i}`));
      const ids = datas.map((d) => home.store.put('chunk', d).id);
      home.store.flush();
      const packs = home.store.listPacks();
      assert.equal(packs.length, 3); // two objects per pack
      // an unflushed pack left behind by a "crash"
      const lost = home.store.put('chunk', pseudoRandomBytes(3000, 'lost')).id;
      const orphanName = packFiles(home).find((n) => !packs.some((p) => p.name === n))!;
      home.store.close({ flush: false });
      // damage: truncate pack 0's tail inside its second record, delete pack 1's file
      const p0 = home.store.packPath(packs[0].name);
      truncateSync(p0, packs[0].size - 100);
      unlinkSync(home.store.packPath(packs[1].name));
      // an obsolete pack whose unlink did not happen
      home.db.run("UPDATE packs SET state = 'obsolete' WHERE id = ?", packs[2].id);
      home.db.run('DELETE FROM objects WHERE pack = ?', packs[2].id);
      const stray = join(home.dir, 'store', 'packs', 'notes.txt');
      writeFileSync(stray, 'not a pack');

      home.store = new PackStore({ db: home.db, dir: join(home.dir, 'store') });
      const report = home.store.recover();
      assert.deepEqual(report.orphanPacksDeleted, [orphanName]);
      assert.deepEqual(report.obsoletePacksRemoved, [packs[2].name]);
      assert.deepEqual(report.strayFiles, [stray]);
      assert.deepEqual(
        report.damagedPacks.map((d) => [d.pack, d.problem, d.objectsAffected]),
        [
          [packs[0].name, 'truncated', 1],
          [packs[1].name, 'missing', 2],
        ],
      );
      assert.equal(existsSync(stray), true);
      assert.equal(home.store.has(lost), false);
      // rows of damaged packs are kept (reported, not dropped), but the packs are marked lost: their
      // objects count as absent (so they are stored again); reads still salvage what is intact, and
      // say what is wrong with the rest
      assert.deepEqual(home.store.listLostPacks().map((l) => [l.pack, l.problem, l.objects]), [
        [packs[0].name, 'truncated', 2],
        [packs[1].name, 'missing', 2],
      ]);
      for (const id of ids.slice(0, 4)) {
        assert.equal(home.store.has(id), false);
        assert.equal(home.store.info(id), undefined);
      }
      assert.deepEqual(home.store.get(ids[0]), datas[0]);
      assert.throws(() => home.store.get(ids[1]), (e: unknown) => isFerryError(e, 'OBJECT_CORRUPT') && /truncated/.test(e.message));
      assert.throws(() => home.store.get(ids[2]), (e: unknown) => isFerryError(e, 'OBJECT_CORRUPT') && /missing/.test(e.message));
      const v = home.store.verifyAll();
      assert.deepEqual(v.bad.map((b) => b.id).sort(), [ids[1], ids[2], ids[3]].sort());
      // a second recovery finds nothing new to do
      const again = home.store.recover();
      assert.deepEqual([again.orphanPacksDeleted, again.obsoletePacksRemoved], [[], []]);
      assert.equal(again.damagedPacks.length, 2);

      // Stored again, an object takes over its row from the lost pack; the others stay there.
      assert.equal(home.store.put('chunk', datas[2]).added, true);
      assert.equal(home.store.putPrepared({ kind: 'chunk', id: ids[1], rawLength: datas[1].length, codec: 0, stored: datas[1] }), true);
      home.store.flush();
      assert.equal(home.store.has(ids[2]), true);
      assert.deepEqual(home.store.get(ids[2]), datas[2]);
      assert.deepEqual(home.store.get(ids[1]), datas[1]);
      assert.equal(home.store.verifyObject(ids[2]), undefined);
      assert.deepEqual(home.store.listLostPacks().map((l) => l.objects), [1, 1]);
      assert.equal(home.store.stats().lostObjects, 2);
      // A damaged record found by a read marks its pack lost too.
      const p4 = home.store.listPacks().find((p) => p.state === 'live' && home.store.packObjects(p.id).some((o) => o.id === ids[2]))!;
      const at = home.store.packObjects(p4.id).find((o) => o.id === ids[2])!.offset + 100;
      const fd = openSync(home.store.packPath(p4.name), 'r+');
      writeSync(fd, Buffer.from('damage'), 0, 6, at);
      closeSync(fd);
      assert.equal(home.store.has(ids[2]), true);
      assert.throws(() => home.store.get(ids[2]), (e: unknown) => isFerryError(e, 'OBJECT_CORRUPT'));
      assert.equal(home.store.has(ids[2]), false);
      assert.equal(home.store.has(ids[1]), false, 'every object of a lost pack counts as absent');
      assert.deepEqual(home.store.listLostPacks().find((l) => l.pack === p4.name)?.problem, 'damaged');
    } finally {
      home.dispose();
    }
  });

  describe('ENOSPC while writing', () => {
    function faultyIo(): PackFileIo & { failAfter: number; failFsync: boolean; written: number } {
      const io = {
        failAfter: Infinity,
        failFsync: false,
        written: 0,
        write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
          if (io.written + length > io.failAfter) {
            const n = Math.max(0, io.failAfter - io.written);
            if (n > 0) {
              io.written += nodePackFileIo.write(fd, buf, offset, n, position); // a short write first, as a full disk does
              return n;
            }
            throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
          }
          io.written += length;
          return nodePackFileIo.write(fd, buf, offset, length, position);
        },
        fsync(fd: number): void {
          if (io.failFsync) throw Object.assign(new Error('EDQUOT: disk quota exceeded, fsync'), { code: 'EDQUOT', syscall: 'fsync' });
          nodePackFileIo.fsync(fd);
        },
        fsyncDir: nodePackFileIo.fsyncDir,
      };
      return io;
    }

    test('a failed write abandons the open pack and forgets pending objects; reads keep working; writing resumes after', () => {
      const io = faultyIo();
      const home = makeTestStore({ io, writeBufferSize: 64 << 10, packTargetSize: 1 << 30 });
      try {
        const kept = pseudoRandomBytes(10_000, 'kept');
        const keptId = home.store.put('chunk', kept).id;
        home.store.flush();
        const packsBefore = packFiles(home);

        io.failAfter = io.written + 100_000;
        const pendingIds: ObjectId[] = [];
        let err: unknown;
        try {
          for (let i = 0; i < 50; i++) pendingIds.push(home.store.put('chunk', pseudoRandomBytes(10_000, `p${i}`)).id);
          home.store.flush();
        } catch (e) {
          err = e;
        }
        assert.ok(isFerryError(err, 'NO_SPACE'), `expected NO_SPACE, got ${err}`);
        assert.match((err as FerryError).message, /Nothing was half-written/);
        assert.ok(pendingIds.length > 0 && pendingIds.length < 50);
        assert.deepEqual(packFiles(home), packsBefore, 'the open pack was unlinked');
        for (const id of pendingIds) assert.equal(home.store.has(id), false);
        assert.equal(home.store.stats().pendingObjects, 0);
        assert.deepEqual(home.store.get(keptId), kept);

        io.failAfter = Infinity;
        const again = home.store.put('chunk', pseudoRandomBytes(10_000, 'p0'));
        assert.equal(again.added, true);
        home.store.flush();
        assert.deepEqual(home.store.get(again.id), pseudoRandomBytes(10_000, 'p0'));
        assert.equal(home.store.verifyAll().bad.length, 0);
      } finally {
        home.dispose();
      }
    });

    test('a write session stops once any writer\'s failed write discarded pending objects; durable() counts only what is indexed', () => {
      const io = faultyIo();
      const home = makeTestStore({ io, writeBufferSize: 64 << 10, packTargetSize: 1 << 30 });
      try {
        const session = home.store.session();
        const mine = session.put('chunk', pseudoRandomBytes(5000, 'mine')).id;
        assert.deepEqual(home.store.durable([mine]), [false], 'pending is not durable');
        session.check();
        // another writer fills the disk: its failure discards the open pack, with `mine` in it
        io.failAfter = io.written + 10_000;
        assert.throws(() => home.store.put('chunk', pseudoRandomBytes(100_000, 'other')), (e: unknown) => isFerryError(e, 'NO_SPACE'));
        io.failAfter = Infinity;
        assert.equal(home.store.has(mine), false);
        // the session stores nothing more (a tree above `mine` must not land), and says why
        assert.throws(() => session.put('tree', pseudoRandomBytes(100, 'above mine')), (e: unknown) => isFerryError(e, 'NO_SPACE') && /discarded/.test(e.message));
        assert.throws(() => session.check(), (e: unknown) => isFerryError(e, 'NO_SPACE'));
        assert.equal(home.store.pendingCount, 0);
        // a new run writes again
        const next = home.store.session();
        const id = next.put('chunk', pseudoRandomBytes(5000, 'mine')).id;
        home.store.flush();
        next.check();
        assert.deepEqual(home.store.durable([id, hashBytes(Buffer.from('never stored'))]), [true, false]);
      } finally {
        home.dispose();
      }
    });

    test('a failed fsync at seal indexes nothing and leaves no file', () => {
      const io = faultyIo();
      const home = makeTestStore({ io });
      try {
        const id = home.store.put('chunk', pseudoRandomBytes(5000, 'fs')).id;
        io.failFsync = true;
        assert.throws(() => home.store.flush(), (e: unknown) => isFerryError(e, 'NO_SPACE'));
        assert.equal(home.store.has(id), false);
        assert.deepEqual(packFiles(home), []);
        assert.equal(home.store.stats().packs, 0);
      } finally {
        home.dispose();
      }
    });

    test('a failed index commit unlinks the sealed pack and indexes nothing', () => {
      const home = makeTestStore({ io: noSyncIo });
      try {
        const ok = home.store.put('chunk', pseudoRandomBytes(5000, 'c0')).id;
        home.store.flush();
        home.db.exec("CREATE TEMP TRIGGER fail_pack BEFORE INSERT ON packs BEGIN SELECT RAISE(ABORT, 'injected commit failure'); END");
        const id = home.store.put('chunk', pseudoRandomBytes(5000, 'c1')).id;
        assert.throws(() => home.store.flush(), (e: unknown) => isFerryError(e, 'IO') && /discarded/.test(e.message));
        home.db.exec('DROP TRIGGER fail_pack');
        assert.equal(home.store.has(id), false);
        assert.equal(packFiles(home).length, 1);
        assert.deepEqual(home.store.get(ok), pseudoRandomBytes(5000, 'c0'));
        assert.deepEqual(home.store.recover().orphanPacksDeleted, []);
      } finally {
        home.dispose();
      }
    });
  });

  test('compression only where it pays: large compressible objects are zstd, random and small ones are not', () => {
    const home = makeTestStore({ io: noSyncIo });
    try {
      const big = home.store.put('chunk', compressibleBytes(1 << 20, 'big')).id;
      const noise = home.store.put('chunk', pseudoRandomBytes(1 << 20, 'noise')).id;
      const small = home.store.put('tree', compressibleBytes(400, 'small')).id;
      assert.equal(home.store.info(big)?.codec, CODEC_ZSTD);
      assert.equal(home.store.info(noise)?.codec, CODEC_NONE);
      assert.equal(home.store.info(small)?.codec, CODEC_NONE);
      home.store.flush();
      assert.deepEqual(home.store.get(big), compressibleBytes(1 << 20, 'big'));
      const plain = makeTestStore({ io: noSyncIo, zstdLevel: 0 });
      try {
        assert.equal(plain.store.info(plain.store.put('chunk', compressibleBytes(1 << 20, 'big')).id)?.codec, CODEC_NONE);
      } finally {
        plain.dispose();
      }
    } finally {
      home.dispose();
    }
  });

  test('PackStore.open runs recovery; the index stores 32-byte ids', () => {
    const home = makeTestStore({ io: noSyncIo });
    try {
      const id = home.store.put('chunk', Buffer.from('x'.repeat(100))).id;
      home.store.flush();
      home.store.close();
      const { store, recovery } = PackStore.open({ db: home.db, dir: join(home.dir, 'store') });
      home.store = store;
      assert.deepEqual(recovery.damagedPacks, []);
      assert.equal(store.get(id).toString(), 'x'.repeat(100));
      const row = home.db.get<{ n: number }>('SELECT length(id) AS n FROM objects')!;
      assert.equal(row.n, 32);
      assert.equal(hashBytes(Buffer.from('x'.repeat(100))), id);
      assert.equal(store.info(id)?.codec, CODEC_NONE);
    } finally {
      home.dispose();
    }
  });
});
