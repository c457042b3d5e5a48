import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { FerryError, isFerryError } from '../../../src/core/errors.ts';
import type { ObjectId, SnapshotId } from '../../../src/core/ids.ts';
import {
  FORMAT_VERSION,
  MAX_FILE_CHUNKS,
  MAX_NAME_BYTES,
  MAX_TARGET_BYTES,
  MAX_TREE_ENTRIES,
  MAX_XATTR_VALUE_BYTES,
  blockListCount,
  compareNames,
  decodeBlockList,
  decodeImage,
  decodeSnapshot,
  decodeTree,
  encodeBlockList,
  encodeImage,
  encodeSnapshot,
  encodeTree,
  sniffObjectKind,
  validateEntryName,
} from '../../../src/snapshot/format.ts';
import {
  BLOCKS_PER_LIST,
  type BlockList,
  type ImageManifest,
  type SnapshotManifest,
  type SnapshotMember,
  type Tree,
  type TreeEntry,
} from '../../../src/snapshot/model.ts';
import * as golden from '../../fixtures/format-v1/values.ts';

// ------------------------------------------------------------ helpers

const corrupt =
  (re?: RegExp) =>
  (err: unknown): boolean => {
    assert.ok(isFerryError(err, 'OBJECT_CORRUPT'), `expected OBJECT_CORRUPT, got ${String(err)}`);
    if (re) assert.match(err.message, re);
    return true;
  };
const assertCorrupt = (fn: () => unknown, re?: RegExp): void => assert.throws(fn, corrupt(re));

const id = (c: string): ObjectId => c.repeat(64).slice(0, 64) as ObjectId;
const B = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s));

/** Independent LEB128 writer for hand-built bytes. */
function vi(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return out;
}
const cat = (...parts: Array<Uint8Array | number[]>): Buffer => Buffer.concat(parts.map((p) => Buffer.from(p)));
const hdr = (magic: string, version = 1): Buffer => cat(B(magic), [version]);
const i64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(v);
  return b;
};
const lp = (b: Uint8Array): Buffer => cat(vi(b.length), b);
const rawId = (i: string): Buffer => Buffer.from(i, 'hex');

interface RawEntry {
  name: Uint8Array;
  code: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: bigint;
  size?: number;
  xattrs?: Array<[Uint8Array, Uint8Array]>;
  tail?: Uint8Array | number[];
}
function rawEntry(e: RawEntry): Buffer {
  const xs = e.xattrs ?? [];
  return cat(
    lp(e.name),
    [e.code],
    vi(e.mode ?? 0o644),
    vi(e.uid ?? 0),
    vi(e.gid ?? 0),
    i64(e.mtime ?? 0n),
    vi(e.size ?? 0),
    vi(xs.length),
    ...xs.flatMap(([n, v]) => [lp(n), lp(v)]),
    e.tail ?? [],
  );
}
const rawTree = (entries: Buffer[], count = entries.length): Buffer => cat(hdr('FTRE'), vi(count), ...entries);
const fifo = (name: string): Buffer => rawEntry({ name: B(name), code: 7 });

const base = (name: string | Buffer, extra: Partial<TreeEntry> = {}): TreeEntry => ({
  name: typeof name === 'string' ? B(name) : name,
  type: 'fifo',
  mode: 0o644,
  uid: 0,
  gid: 0,
  mtimeNs: 0n,
  size: 0,
  xattrs: [],
  ...extra,
});
const file = (name: string, extra: Partial<TreeEntry> = {}): TreeEntry => base(name, { type: 'file', size: 10, chunks: [id('1')], ...extra });
const treeOf = (...entries: TreeEntry[]): Tree => ({ entries });

// --------------------------------------------------------- arbitraries

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const idArb = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex') as ObjectId);
const nameArb = fc.uint8Array({ minLength: 1, maxLength: 10 }).map((b) => {
  const n = Buffer.from(b.map((c) => (c === 0 || c === 0x2f ? 0x80 | c : c)));
  return n.equals(B('.')) || n.equals(B('..')) ? Buffer.concat([n, B('x')]) : n;
});
const bytesNoNul = (min: number, max: number) =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b.map((c) => (c === 0 ? 1 : c))));
const xattrsArb = fc
  .uniqueArray(fc.tuple(bytesNoNul(1, 12), fc.uint8Array({ maxLength: 16 }).map((v) => Buffer.from(v))), {
    maxLength: 3,
    selector: ([n]) => n.toString('hex'),
  })
  .map((xs) => xs.sort((a, b) => Buffer.compare(a[0], b[0])) as Array<[Buffer, Buffer]>);
const sizeArb = fc.oneof(fc.nat(), fc.constantFrom(0, 1, 127, 128, 2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.maxSafeNat());

function entryArb(name: Buffer): fc.Arbitrary<TreeEntry> {
  const common = fc.record({
    mode: fc.integer({ min: 0, max: 0o7777 }),
    uid: fc.integer({ min: 0, max: 0xffffffff }),
    gid: fc.integer({ min: 0, max: 0xffffffff }),
    mtimeNs: fc.oneof(fc.bigInt({ min: INT64_MIN, max: INT64_MAX }), fc.constantFrom(INT64_MIN, INT64_MAX, 0n, -1n)),
    xattrs: xattrsArb,
  });
  const specific: fc.Arbitrary<Partial<TreeEntry>> = fc.oneof(
    fc.constant(null).map(() => ({ type: 'file' as const, size: 0, chunks: [] as ObjectId[] })),
    fc.array(idArb, { minLength: 1, maxLength: 4 }).chain((chunks) =>
      fc.integer({ min: chunks.length, max: Number.MAX_SAFE_INTEGER }).map((size) => ({ type: 'file' as const, size, chunks })),
    ),
    idArb.map((tree) => ({ type: 'dir' as const, size: 0, tree })),
    bytesNoNul(1, 20).map((target) => ({ type: 'symlink' as const, size: target.length, target })),
    fc.array(nameArb, { minLength: 1, maxLength: 3 }).map((parts) => ({
      type: 'hardlink' as const,
      size: 0,
      target: Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [B('/'), p]))),
    })),
    fc.tuple(fc.constantFrom('chardev' as const, 'blockdev' as const), sizeArb).map(([type, rdev]) => ({ type, size: 0, rdev })),
    fc.constantFrom('fifo' as const, 'socket' as const).map((type) => ({ type, size: 0 })),
  );
  return fc.tuple(common, specific).map(([c, s]) => ({ name, ...c, ...s }) as TreeEntry);
}

const treeArb: fc.Arbitrary<Tree> = fc
  .uniqueArray(nameArb, { maxLength: 8, selector: (n) => n.toString('hex') })
  .chain((names) => {
    names.sort(compareNames);
    return fc.tuple(...names.map(entryArb)).map((entries) => ({ entries }));
  });

const imageArb: fc.Arbitrary<ImageManifest> = fc
  .record({ shift: fc.integer({ min: 12, max: 24 }), lists: fc.integer({ min: 0, max: 4 }), frac: fc.double({ min: 0, max: 1, noNaN: true }) })
  .chain(({ shift, lists, frac }) => {
    const blockSize = 2 ** shift;
    const perList = blockSize * BLOCKS_PER_LIST;
    const size = lists === 0 ? 0 : (lists - 1) * perList + 1 + Math.floor(frac * (perList - 1));
    return fc.array(idArb, { minLength: lists, maxLength: lists }).map((ids) => ({ size, blockSize, lists: ids }));
  });

const blockListArb: fc.Arbitrary<BlockList> = fc
  .array(fc.option(idArb, { nil: null, freq: 2 }), { minLength: 1, maxLength: 40 })
  .map((blocks) => ({ blocks }));

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ulidArb = fc
  .tuple(fc.constantFrom(...'01234567'), fc.string({ unit: fc.constantFrom(...CROCKFORD), minLength: 25, maxLength: 25 }))
  .map(([a, b]) => (a + b) as SnapshotId);
const NAME_FIRST = 'abcXYZ019';
const NAME_REST = 'azAZ09._@+-';
const snapNameArb = fc
  .tuple(fc.constantFrom(...NAME_FIRST), fc.string({ unit: fc.constantFrom(...NAME_REST), maxLength: 127 }))
  .map(([a, b]) => a + b);
const originArb = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 128 });
const memberArb: fc.Arbitrary<SnapshotMember> = fc.record(
  { name: snapNameArb, kind: fc.constantFrom('tree' as const, 'image' as const), root: idArb },
  { noNullPrototype: true },
);
const snapshotArb: fc.Arbitrary<SnapshotManifest> = fc
  .record({
    id: ulidArb,
    volume: snapNameArb,
    name: fc.option(snapNameArb, { nil: null }),
    time: fc.oneof(fc.maxSafeNat(), fc.constant(0)),
    origin: originArb,
    parent: fc.option(ulidArb, { nil: null }),
    members: fc.uniqueArray(memberArb, { minLength: 1, maxLength: 5, selector: (m) => m.name }),
  }, { noNullPrototype: true })
  .filter((s) => s.parent !== s.id);

// ----------------------------------------------------------- round trips

type Codec<T> = { name: string; enc: (v: T) => Buffer; dec: (b: Uint8Array) => T; arb: fc.Arbitrary<T> };
const codecs = [
  { name: 'tree', enc: encodeTree, dec: decodeTree, arb: treeArb } satisfies Codec<Tree>,
  { name: 'image', enc: encodeImage, dec: decodeImage, arb: imageArb } satisfies Codec<ImageManifest>,
  { name: 'blocklist', enc: encodeBlockList, dec: decodeBlockList, arb: blockListArb } satisfies Codec<BlockList>,
  { name: 'snapshot', enc: encodeSnapshot, dec: decodeSnapshot, arb: snapshotArb } satisfies Codec<SnapshotManifest>,
] as Array<Codec<unknown>>;

describe('round trips', () => {
  for (const c of codecs) {
    test(`${c.name}: decode(encode(x)) deep-equals x, and encoding is deterministic`, () => {
      fc.assert(
        fc.property(c.arb, (x) => {
          const a = c.enc(x);
          const b = c.enc(structuredClone(x));
          assert.ok(a.equals(b), 'same value, same bytes');
          const y = c.dec(a);
          assert.deepStrictEqual(y, x);
          assert.ok(c.enc(y).equals(a));
          assert.equal(sniffObjectKind(a), c.name);
        }),
        { numRuns: 150 },
      );
    });

    test(`${c.name}: decoding a Uint8Array view at an offset works`, () => {
      const x = fc.sample(c.arb, { numRuns: 1, seed: 7 })[0];
      const bytes = c.enc(x);
      const backing = new Uint8Array(bytes.length + 10);
      backing.set(bytes, 5);
      assert.deepStrictEqual(c.dec(new Uint8Array(backing.buffer, 5, bytes.length)), x);
    });
  }

  test('decoded buffers are copies, not views of the input', () => {
    const bytes = encodeTree(golden.tree);
    const t = decodeTree(bytes);
    bytes.fill(0);
    assert.deepStrictEqual(t, golden.tree);
  });

  test('a full blocklist of 4096 blocks round-trips', () => {
    const blocks = Array.from({ length: BLOCKS_PER_LIST }, (_, i) => (i % 3 === 0 ? null : (i.toString(16).padStart(64, '0') as ObjectId)));
    assert.deepStrictEqual(decodeBlockList(encodeBlockList({ blocks })), { blocks });
    assertCorrupt(() => encodeBlockList({ blocks: [...blocks, null] }), /4097 blocks/);
  });
});

// ---------------------------------------------------------------- golden

describe('golden fixtures (format v1)', () => {
  const dir = new URL('../../fixtures/format-v1/', import.meta.url);
  const cases: Array<[string, unknown, (v: never) => Buffer, (b: Uint8Array) => unknown]> = [
    ['tree', golden.tree, encodeTree, decodeTree],
    ['image', golden.image, encodeImage, decodeImage],
    ['blocklist', golden.blocklist, encodeBlockList, decodeBlockList],
    ['snapshot', golden.snapshot, encodeSnapshot, decodeSnapshot],
  ];
  for (const [name, value, enc, dec] of cases) {
    test(`${name}.bin is exactly the encoding of the fixed value`, () => {
      const stored = readFileSync(new URL(`${name}.bin`, dir));
      assert.ok(enc(value as never).equals(stored), `${name} encoding changed: the v1 format must not change (see generate.ts)`);
      assert.deepStrictEqual(dec(stored), value);
    });
  }

  test('hand-built bytes (independent of the encoder) match the docs', () => {
    // tree: one fifo and one dir, as docs/formats.md describes
    const t = rawTree([
      rawEntry({ name: B('a'), code: 7, mode: 0o600, uid: 300, gid: 2, mtime: -5n }),
      rawEntry({ name: B('b'), code: 2, mode: 0o755, tail: rawId(id('ab')) }),
    ]);
    const expect = treeOf(
      base('a', { mode: 0o600, uid: 300, gid: 2, mtimeNs: -5n }),
      base('b', { type: 'dir', mode: 0o755, tree: id('ab') }),
    );
    assert.deepStrictEqual(decodeTree(t), expect);
    assert.ok(encodeTree(expect).equals(t));
    // image: 64 KiB blocks, one list
    const img = cat(hdr('FIMG'), vi(65536 * 3), vi(65536), vi(1), rawId(id('1')));
    assert.deepStrictEqual(decodeImage(img), { size: 65536 * 3, blockSize: 65536, lists: [id('1')] });
    // blocklist: [null, X, null]: bitmap 0b010
    const bl = cat(hdr('FBLK'), vi(3), [0b010], rawId(id('2')));
    assert.deepStrictEqual(decodeBlockList(bl), { blocks: [null, id('2'), null] });
    // the example in docs/formats.md: [X, hole, hole, Y]
    const doc = encodeBlockList({ blocks: [id('1'), null, null, id('2')] });
    assert.ok(doc.subarray(0, 7).equals(Buffer.from([0x46, 0x42, 0x4c, 0x4b, 0x01, 0x04, 0x09])));
    assert.equal(doc.length, 7 + 64);
  });
});

// --------------------------------------------------- headers and versions

describe('headers', () => {
  const samples: Array<[string, Buffer, (b: Uint8Array) => unknown]> = [
    ['tree', encodeTree(golden.tree), decodeTree],
    ['image', encodeImage(golden.image), decodeImage],
    ['blocklist', encodeBlockList(golden.blocklist), decodeBlockList],
    ['snapshot', encodeSnapshot(golden.snapshot), decodeSnapshot],
  ];

  test('magic and version come first', () => {
    for (const [, bytes] of samples) assert.equal(bytes[4], FORMAT_VERSION);
    assert.equal(FORMAT_VERSION, 1);
    assert.equal(sniffObjectKind(B('FTRE')), 'tree');
    assert.equal(sniffObjectKind(B('XXXX\x01')), null);
    assert.equal(sniffObjectKind(B('FT')), null);
  });

  for (const [name, bytes, dec] of samples) {
    test(`${name}: newer version is a FORMAT_VERSION error that says to upgrade`, () => {
      for (const v of [2, 255]) {
        const b = Buffer.from(bytes);
        b[4] = v;
        assert.throws(
          () => dec(b),
          (e: unknown) => isFerryError(e, 'FORMAT_VERSION') && /upgrade ferry/.test(e.message) && e.message.includes(`version ${v}`),
        );
      }
      const b0 = Buffer.from(bytes);
      b0[4] = 0;
      assertCorrupt(() => dec(b0), /version 0/);
    });

    test(`${name}: wrong magic, other kinds, truncation at every length, trailing bytes`, () => {
      for (const [other, otherBytes] of samples) {
        if (other !== name) assertCorrupt(() => dec(otherBytes), new RegExp(`expected a ${name} object.*found a ${other} object`));
      }
      const bad = Buffer.from(bytes);
      bad[0] ^= 0x20;
      assertCorrupt(() => dec(bad), /bad magic/);
      for (let n = 0; n < bytes.length; n++) assertCorrupt(() => dec(bytes.subarray(0, n)));
      assertCorrupt(() => dec(cat(bytes, [0])), /trailing/);
      assertCorrupt(() => dec(cat(bytes, B('garbage'))), /7 trailing bytes/);
      assertCorrupt(() => dec('FTRE\x01' as unknown as Uint8Array), /not a byte buffer/);
    });
  }

  test('random mutations: decode throws a FerryError or gives a value that re-encodes to the same bytes', () => {
    for (const [, bytes, dec] of samples) {
      const enc = samples.find((s) => s[2] === dec)!;
      const reenc = { tree: encodeTree, image: encodeImage, blocklist: encodeBlockList, snapshot: encodeSnapshot }[enc[0]] as (v: unknown) => Buffer;
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(bytes.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
          fc.integer({ min: 0, max: 2 }),
          (edits, cut) => {
            const b = Buffer.from(bytes);
            for (const [at, v] of edits) b[at] = v;
            const input = cut === 0 ? b.subarray(0, b.length - edits[0][0] % 8) : b;
            let value: unknown;
            try {
              value = dec(input);
            } catch (e) {
              assert.ok(e instanceof FerryError && (e.code === 'OBJECT_CORRUPT' || e.code === 'FORMAT_VERSION'), `unexpected ${String(e)}`);
              return;
            }
            assert.ok(reenc(value).equals(input), 'accepted bytes must be canonical');
          },
        ),
        { numRuns: 300 },
      );
    }
  });

  test('random bytes after a valid header never throw anything but OBJECT_CORRUPT', () => {
    const decs: Array<[string, (b: Uint8Array) => unknown]> = [
      ['FTRE', decodeTree],
      ['FIMG', decodeImage],
      ['FBLK', decodeBlockList],
      ['FSNP', decodeSnapshot],
    ];
    for (const [magic, dec] of decs) {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), (rest) => {
          try {
            dec(cat(hdr(magic), rest));
          } catch (e) {
            assert.ok(isFerryError(e, 'OBJECT_CORRUPT'), `unexpected ${String(e)}`);
          }
        }),
        { numRuns: 200 },
      );
    }
  });
});

// -------------------------------------------------------------- varints

describe('varints', () => {
  const fifoWithMode = (mode: number[]): Buffer =>
    rawTree([cat(lp(B('a')), [7], mode, [0, 0], i64(0n), [0, 0])]);

  test('non-minimal, over-long and over-2^53 varints are rejected', () => {
    assert.deepStrictEqual(decodeTree(fifoWithMode([0x80 | 0x24, 0x03])).entries[0].mode, 0o644);
    assertCorrupt(() => decodeTree(fifoWithMode([0x80, 0x00])), /not minimally encoded/);
    assertCorrupt(() => decodeTree(fifoWithMode([0xa4, 0x83, 0x00])), /not minimally encoded/);
    assertCorrupt(() => decodeTree(fifoWithMode([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])), /longer than 8 bytes/);
    // 2^53 exactly: 8 bytes, just too big
    const big = vi(2 ** 53);
    assert.equal(big.length, 8);
    const t = rawTree([rawEntry({ name: B('a'), code: 7 })]);
    assertCorrupt(() => decodeTree(cat(hdr('FTRE'), vi(1), lp(B('a')), [7], vi(0), vi(0), vi(0), i64(0n), big, [0])), /exceeds 2\^53-1/);
    assert.equal(decodeTree(t).entries.length, 1);
  });

  test('sizes and integers at the edges round-trip', () => {
    for (const size of [0, 1, 127, 128, 16383, 16384, 2 ** 28 - 1, 2 ** 28, 2 ** 31, 2 ** 32, 2 ** 49, Number.MAX_SAFE_INTEGER]) {
      const e = size === 0 ? file('f', { size: 0, chunks: [] }) : file('f', { size });
      assert.deepStrictEqual(decodeTree(encodeTree(treeOf(e))), treeOf(e));
      const d = base('d', { type: 'blockdev', rdev: size });
      assert.deepStrictEqual(decodeTree(encodeTree(treeOf(d))), treeOf(d));
    }
  });
});

// ------------------------------------------------------------- tree rules

describe('tree validation', () => {
  test('validateEntryName and compareNames', () => {
    for (const ok of ['a', '...', '.a', 'a.', '-', ' ', '\xff\xfe']) validateEntryName(B(ok));
    validateEntryName(Buffer.alloc(MAX_NAME_BYTES, 0x61));
    for (const [bad, re] of [
      ['', /empty/],
      ['.', /'\.' or '\.\.'/],
      ['..', /'\.' or '\.\.'/],
      ['a/b', /'\/'/],
      ['/', /'\/'/],
      ['a\0', /NUL/],
    ] as const) {
      assertCorrupt(() => validateEntryName(B(bad)), re);
    }
    assertCorrupt(() => validateEntryName(Buffer.alloc(MAX_NAME_BYTES + 1, 0x61)), /longer than 4096/);
    assert.ok(compareNames(B('a'), B('b')) < 0);
    assert.ok(compareNames(B('B'), B('a')) < 0, 'byte order, not locale order');
    assert.ok(compareNames(B('a'), B('a\0')) < 0);
    assert.ok(compareNames(B('z'), B([0xc3, 0xa9])) < 0);
    assert.equal(compareNames(B('x'), B('x')), 0);
  });

  const invalid: Array<[string, Tree, RegExp]> = [
    ['unsorted', treeOf(base('b'), base('a')), /not strictly sorted/],
    ['duplicate', treeOf(base('a'), base('a')), /not strictly sorted/],
    ['byte order not locale order', treeOf(base('a'), base('B')), /not strictly sorted/],
    ['empty name', treeOf(base('')), /invalid name: empty/],
    ['dot', treeOf(base('.')), /invalid name/],
    ['dotdot', treeOf(base('..')), /invalid name/],
    ['slash', treeOf(base('a/b')), /invalid name: contains '\/'/],
    ['nul', treeOf(base('a\0')), /NUL/],
    ['long name', treeOf(base(Buffer.alloc(MAX_NAME_BYTES + 1, 0x61))), /longer than 4096/],
    ['string name', treeOf(base('a', { name: 'a' as unknown as Buffer })), /not a byte buffer/],
    ['unknown type', treeOf(base('a', { type: 'door' as never })), /unknown type "door"/],
    ['mode too big', treeOf(base('a', { mode: 0o10000 })), /mode/],
    ['mode negative', treeOf(base('a', { mode: -1 })), /mode/],
    ['mode fraction', treeOf(base('a', { mode: 1.5 })), /mode/],
    ['uid negative', treeOf(base('a', { uid: -1 })), /uid/],
    ['uid too big', treeOf(base('a', { uid: 2 ** 32 })), /uid/],
    ['gid NaN', treeOf(base('a', { gid: NaN })), /gid/],
    ['mtime number', treeOf(base('a', { mtimeNs: 5 as unknown as bigint })), /mtimeNs/],
    ['mtime too big', treeOf(base('a', { mtimeNs: 2n ** 63n })), /mtimeNs/],
    ['mtime too small', treeOf(base('a', { mtimeNs: -(2n ** 63n) - 1n })), /mtimeNs/],
    ['size unsafe', treeOf(file('a', { size: 2 ** 53 })), /size/],
    ['size negative', treeOf(file('a', { size: -1 })), /size/],
    ['fifo with size', treeOf(base('a', { size: 1 })), /must have size 0/],
    ['dir with size', treeOf(base('a', { type: 'dir', tree: id('1'), size: 4096 })), /must have size 0/],
    ['file without chunks', treeOf(base('a', { type: 'file', size: 0 })), /needs a chunks array/],
    ['empty file with chunks', treeOf(file('a', { size: 0 })), /only an empty file has no chunks/],
    ['non-empty file without chunks', treeOf(file('a', { size: 5, chunks: [] })), /only an empty file has no chunks/],
    ['more chunks than bytes', treeOf(file('a', { size: 1, chunks: [id('1'), id('2')] })), /2 chunks for 1 bytes/],
    ['bad chunk id', treeOf(file('a', { chunks: [id('A')] })), /chunk 0 is not an object id/],
    ['short chunk id', treeOf(file('a', { chunks: ['abcd' as ObjectId] })), /chunk 0 is not an object id/],
    ['too many chunks', treeOf(file('a', { size: 2 ** 40, chunks: new Array(MAX_FILE_CHUNKS + 1) })), /more than 16777216/],
    ['file with tree', treeOf(file('a', { tree: id('1') })), /has only its own fields, but has chunks, tree/],
    ['dir without tree', treeOf(base('a', { type: 'dir' })), /needs a tree/],
    ['dir with chunks', treeOf(base('a', { type: 'dir', tree: id('1'), chunks: [] })), /but has chunks/],
    ['fifo with rdev', treeOf(base('a', { rdev: 1 })), /but has rdev/],
    ['socket with target', treeOf(base('a', { type: 'socket', target: B('x') })), /but has target/],
    ['chardev without rdev', treeOf(base('a', { type: 'chardev' })), /needs rdev/],
    ['blockdev bad rdev', treeOf(base('a', { type: 'blockdev', rdev: -1 })), /needs rdev/],
    ['symlink without target', treeOf(base('a', { type: 'symlink' })), /needs a target/],
    ['symlink empty target', treeOf(base('a', { type: 'symlink', target: B('') })), /target is empty/],
    ['symlink size mismatch', treeOf(base('a', { type: 'symlink', target: B('abc'), size: 2 })), /differs from its target length 3/],
    ['symlink NUL', treeOf(base('a', { type: 'symlink', target: B('a\0'), size: 2 })), /NUL/],
    ['symlink long', treeOf(base('a', { type: 'symlink', target: Buffer.alloc(MAX_TARGET_BYTES + 1, 0x61), size: MAX_TARGET_BYTES + 1 })), /more than 65536/],
    ['symlink with chunks', treeOf(base('a', { type: 'symlink', target: B('x'), size: 1, chunks: [] })), /but has chunks/],
    ['hardlink absolute', treeOf(base('a', { type: 'hardlink', target: B('/etc/x') })), /relative path/],
    ['hardlink dotdot', treeOf(base('a', { type: 'hardlink', target: B('x/../y') })), /relative path/],
    ['hardlink trailing slash', treeOf(base('a', { type: 'hardlink', target: B('x/') })), /relative path/],
    ['hardlink double slash', treeOf(base('a', { type: 'hardlink', target: B('x//y') })), /relative path/],
    ['hardlink with size', treeOf(base('a', { type: 'hardlink', target: B('x'), size: 1 })), /size 0/],
    ['xattrs missing', treeOf(base('a', { xattrs: undefined as never })), /xattrs is not an array/],
    ['xattr not a pair', treeOf(base('a', { xattrs: [[B('a')] as never] })), /not a \[name, value\] pair/],
    ['xattr string', treeOf(base('a', { xattrs: [['user.a', B('')] as never] })), /byte buffers/],
    ['xattr empty name', treeOf(base('a', { xattrs: [[B(''), B('')]] })), /name is 0 bytes/],
    ['xattr long name', treeOf(base('a', { xattrs: [[Buffer.alloc(256, 0x61), B('')]] })), /name is 256 bytes/],
    ['xattr NUL name', treeOf(base('a', { xattrs: [[B('user.\0'), B('')]] })), /NUL/],
    ['xattr big value', treeOf(base('a', { xattrs: [[B('user.a'), Buffer.alloc(MAX_XATTR_VALUE_BYTES + 1)]] })), /more than 1048576/],
    ['xattrs unsorted', treeOf(base('a', { xattrs: [[B('user.b'), B('')], [B('user.a'), B('')]] })), /not strictly sorted/],
    ['xattrs duplicate', treeOf(base('a', { xattrs: [[B('user.a'), B('1')], [B('user.a'), B('2')]] })), /not strictly sorted/],
    ['entry null', treeOf(null as never), /entry 0 is not an object/],
  ];
  for (const [what, t, re] of invalid) {
    test(`encode rejects: ${what}`, () => assertCorrupt(() => encodeTree(t), re));
  }

  test('encode rejects a missing or oversized entries array', () => {
    assertCorrupt(() => encodeTree({} as Tree), /entries is not an array/);
    assertCorrupt(() => encodeTree({ entries: new Array(MAX_TREE_ENTRIES + 1) }), /more than 4000000/);
  });

  test('edge values that are valid', () => {
    const t = treeOf(
      base(Buffer.alloc(MAX_NAME_BYTES, 0x61), { mode: 0o7777, uid: 2 ** 32 - 1, gid: 0 }),
      base('b', { type: 'symlink', target: Buffer.alloc(MAX_TARGET_BYTES, 0x62), size: MAX_TARGET_BYTES }),
      base('c', { xattrs: [[Buffer.alloc(255, 0x63), Buffer.alloc(MAX_XATTR_VALUE_BYTES, 1)]] }),
      base('d', { type: 'hardlink', target: B('...') }),
    );
    assert.deepStrictEqual(decodeTree(encodeTree(t)), t);
    assert.deepStrictEqual(decodeTree(encodeTree(treeOf())), treeOf());
  });
});

describe('tree decoding of malformed bytes', () => {
  const chunkTail = (ids: string[]): Buffer => cat(vi(ids.length), ...ids.map(rawId));
  const bad: Array<[string, Buffer, RegExp]> = [
    ['unsorted entries', rawTree([fifo('b'), fifo('a')]), /not strictly sorted/],
    ['duplicate entries', rawTree([fifo('a'), fifo('a')]), /not strictly sorted/],
    ['empty name', rawTree([rawEntry({ name: B(''), code: 7 })]), /invalid name: empty/],
    ['dotdot name', rawTree([fifo('..')]), /invalid name/],
    ['slash in name', rawTree([fifo('x/y')]), /contains '\/'/],
    ['NUL in name', rawTree([fifo('x\0')]), /NUL/],
    ['name over limit', rawTree([rawEntry({ name: Buffer.alloc(MAX_NAME_BYTES + 1, 0x61), code: 7 })]), /4097 bytes, more than the limit of 4096/],
    ['type code 0', rawTree([rawEntry({ name: B('a'), code: 0 })]), /unknown type code 0/],
    ['type code 9', rawTree([rawEntry({ name: B('a'), code: 9 })]), /unknown type code 9/],
    ['mode too big', rawTree([rawEntry({ name: B('a'), code: 7, mode: 0o10000 })]), /mode 4096/],
    ['uid too big', rawTree([rawEntry({ name: B('a'), code: 7, uid: 2 ** 32 })]), /uid/],
    ['fifo with size', rawTree([rawEntry({ name: B('a'), code: 7, size: 3 })]), /must have size 0/],
    ['file chunks vs size', rawTree([rawEntry({ name: B('a'), code: 1, size: 0, tail: chunkTail([id('1')]) })]), /only an empty file/],
    ['symlink size mismatch', rawTree([rawEntry({ name: B('a'), code: 3, size: 5, tail: lp(B('abc')) })]), /differs from its target length/],
    ['symlink empty target', rawTree([rawEntry({ name: B('a'), code: 3, size: 0, tail: lp(B('')) })]), /target is empty/],
    ['symlink target over limit', rawTree([rawEntry({ name: B('a'), code: 3, size: 1, tail: vi(MAX_TARGET_BYTES + 1) })]), /more than the limit of 65536/],
    ['hardlink escaping', rawTree([rawEntry({ name: B('a'), code: 4, tail: lp(B('../x')) })]), /relative path/],
    ['xattrs unsorted', rawTree([rawEntry({ name: B('a'), code: 7, xattrs: [[B('b'), B('')], [B('a'), B('')]] })]), /xattr names not strictly sorted/],
    ['xattr empty name', rawTree([rawEntry({ name: B('a'), code: 7, xattrs: [[B(''), B('')]] }), fifo('b')]), /name is 0 bytes/],
    ['xattr name over limit', rawTree([rawEntry({ name: B('a'), code: 7, xattrs: [[Buffer.alloc(256, 0x61), B('')]] })]), /more than the limit of 255/],
    ['xattr value over limit', rawTree([cat(rawEntry({ name: B('a'), code: 7 }).subarray(0, -1), vi(1), lp(B('n')), vi(MAX_XATTR_VALUE_BYTES + 1))]), /more than the limit of 1048576/],
    ['entry missing', rawTree([fifo('a')], 2), /truncated/],
    ['entry count over limit', rawTree([], MAX_TREE_ENTRIES + 1), /more than 4000000/],
    ['trailing entry', cat(rawTree([fifo('a')]), fifo('b')), /trailing bytes/],
  ];
  for (const [what, bytes, re] of bad) {
    test(`decode rejects: ${what}`, () => assertCorrupt(() => decodeTree(bytes), re));
  }

  test('the error names the entry and the byte offset', () => {
    assertCorrupt(() => decodeTree(rawTree([fifo('a'), fifo('c'), fifo('b')])), /entry 2 \("b"\).*entry at byte \d+/);
  });

  test('forged huge counts fail fast without allocating', (t) => {
    const t0 = performance.now();
    const before = process.memoryUsage().arrayBuffers;
    // 4,000,000 entries claimed, 20 bytes given
    assertCorrupt(() => decodeTree(cat(rawTree([fifo('a')], MAX_TREE_ENTRIES))), /cannot fit/);
    // a file claiming 16M chunks (512 MiB of ids) with none present
    assertCorrupt(() => decodeTree(rawTree([rawEntry({ name: B('a'), code: 1, size: 2 ** 40, tail: vi(MAX_FILE_CHUNKS) })])), /truncated: chunk ids needs 536870912 bytes.*in entry 0/);
    assertCorrupt(() => decodeTree(rawTree([rawEntry({ name: B('a'), code: 1, size: 2 ** 40, tail: vi(MAX_FILE_CHUNKS + 1) })])), /more than 16777216/);
    // 65536 xattrs claimed
    assertCorrupt(() => decodeTree(rawTree([cat(rawEntry({ name: B('a'), code: 7 }).subarray(0, -1), vi(65536))])), /cannot fit/);
    assertCorrupt(() => decodeTree(rawTree([cat(rawEntry({ name: B('a'), code: 7 }).subarray(0, -1), vi(65537))])), /more than 65536/);
    // a name claiming 4096 bytes, a target 65536, an xattr value of 1 MiB: none present
    assertCorrupt(() => decodeTree(cat(hdr('FTRE'), vi(1), vi(4096), Buffer.alloc(15))), /truncated/);
    assertCorrupt(() => decodeTree(rawTree([rawEntry({ name: B('a'), code: 3, size: 65536, tail: vi(65536) })])), /truncated/);
    // lengths near 2^53 in every varint position
    assertCorrupt(() => decodeTree(cat(hdr('FTRE'), vi(Number.MAX_SAFE_INTEGER))), /more than 4000000/);
    assertCorrupt(() => decodeImage(cat(hdr('FIMG'), vi(1), vi(4096), vi(Number.MAX_SAFE_INTEGER))), /truncated/);
    assertCorrupt(() => decodeSnapshot(cat(hdr('FSNP'), vi(Number.MAX_SAFE_INTEGER))), /more than the limit of 128/);
    const grown = process.memoryUsage().arrayBuffers - before;
    t.diagnostic(`hostile lengths refused in ${(performance.now() - t0).toFixed(1)} ms`);
    assert.ok(grown < 8 * 1024 * 1024, `array buffers grew by ${grown} bytes`);
  });
});

// ------------------------------------------------------------ images

describe('image validation', () => {
  const img = (size: number, blockSize: number, n = blockListCount(size, blockSize)): ImageManifest => ({
    size,
    blockSize,
    lists: Array.from({ length: n }, (_, i) => id(String(i % 10))),
  });

  test('list count follows size and block size', () => {
    assert.equal(blockListCount(0, 4096), 0);
    assert.equal(blockListCount(1, 4096), 1);
    assert.equal(blockListCount(4096 * 4096, 4096), 1);
    assert.equal(blockListCount(4096 * 4096 + 1, 4096), 2);
    assert.equal(blockListCount(Number.MAX_SAFE_INTEGER, 16 * 2 ** 20), 2 ** 53 / 2 ** 24 / 4096);
    for (const m of [img(0, 4096), img(1, 4096), img(4096 * 4096, 4096), img(4096 * 4096 + 1, 4096), img(2 ** 40, 2 ** 24)]) {
      assert.deepStrictEqual(decodeImage(encodeImage(m)), m);
    }
  });

  const invalid: Array<[string, ImageManifest, RegExp]> = [
    ['block size not a power of two', img(100, 6000, 1), /block size 6000/],
    ['block size too small', img(100, 2048, 1), /block size 2048/],
    ['block size too large', img(100, 2 ** 25, 1), /block size 33554432/],
    ['block size zero', img(0, 0, 0), /block size 0/],
    ['too few lists', img(4096 * 4096 + 1, 4096, 1), /1 blocklists, but size .* needs 2/],
    ['too many lists', img(0, 4096, 1), /needs 0/],
    ['size negative', img(-1, 4096, 0), /size -1/],
    ['size unsafe', img(2 ** 53, 2 ** 24, 0), /size/],
    ['bad list id', { size: 1, blockSize: 4096, lists: ['x' as ObjectId] }, /blocklist 0 is not an object id/],
  ];
  for (const [what, m, re] of invalid) {
    test(`encode rejects: ${what}`, () => assertCorrupt(() => encodeImage(m), re));
  }

  test('decode rejects the same in bytes', () => {
    const raw = (size: number, bs: number, n: number) => cat(hdr('FIMG'), vi(size), vi(bs), vi(n), ...Array.from({ length: n }, () => rawId(id('1'))));
    assert.deepStrictEqual(decodeImage(raw(1, 4096, 1)), { size: 1, blockSize: 4096, lists: [id('1')] });
    assertCorrupt(() => decodeImage(raw(1, 6000, 1)), /block size 6000/);
    assertCorrupt(() => decodeImage(raw(1, 2048, 1)), /block size 2048/);
    assertCorrupt(() => decodeImage(raw(1, 4096, 2)), /needs 1/);
    assertCorrupt(() => decodeImage(raw(1, 4096, 0)), /needs 1/);
    assertCorrupt(() => decodeImage(cat(raw(1, 4096, 1), [1])), /trailing/);
  });
});

// --------------------------------------------------------- blocklists

describe('blocklist validation', () => {
  test('encode rejects', () => {
    assertCorrupt(() => encodeBlockList({ blocks: [] }), /0 blocks/);
    assertCorrupt(() => encodeBlockList({ blocks: [undefined as never] }), /block 0 is neither null nor an object id/);
    assertCorrupt(() => encodeBlockList({ blocks: [id('A')] }), /block 0/);
    assertCorrupt(() => encodeBlockList({} as BlockList), /not an array/);
  });

  test('decode rejects', () => {
    assert.deepStrictEqual(decodeBlockList(cat(hdr('FBLK'), vi(1), [0])), { blocks: [null] });
    assertCorrupt(() => decodeBlockList(cat(hdr('FBLK'), vi(0))), /0 blocks/);
    assertCorrupt(() => decodeBlockList(cat(hdr('FBLK'), vi(4097), Buffer.alloc(513))), /4097 blocks/);
    assertCorrupt(() => decodeBlockList(cat(hdr('FBLK'), vi(1), [0b10])), /bits set past the last block/);
    assertCorrupt(() => decodeBlockList(cat(hdr('FBLK'), vi(9), [0, 0x80])), /bits set past the last block/);
    assertCorrupt(() => decodeBlockList(cat(hdr('FBLK'), vi(2), [0b11], rawId(id('1')))), /ids of the 2 blocks present needs 64 bytes, only 32 left/);
    assertCorrupt(() => decodeBlockList(cat(hdr('FBLK'), vi(2), [0b01], rawId(id('1')), rawId(id('1')))), /32 trailing bytes/);
    assertCorrupt(() => decodeBlockList(cat(hdr('FBLK'), vi(4096), Buffer.alloc(10))), /presence bitmap/);
  });
});

// ---------------------------------------------------------- snapshots

describe('snapshot validation', () => {
  const s = golden.snapshot;
  const with_ = (patch: Partial<SnapshotManifest>): SnapshotManifest => ({ ...s, ...patch });
  const invalid: Array<[string, SnapshotManifest, RegExp]> = [
    ['bad id', with_({ id: 'nope' as SnapshotId }), /id "nope" is not a snapshot id/],
    ['lower-case id', with_({ id: s.id.toLowerCase() as SnapshotId }), /canonical/],
    ['bad volume', with_({ volume: '-x' }), /volume name "-x" is not valid/],
    ['long volume', with_({ volume: 'a'.repeat(129) }), /volume name/],
    ['bad name', with_({ name: 'a b' }), /snapshot name "a b" is not valid/],
    ['empty name', with_({ name: '' }), /snapshot name/],
    ['time negative', with_({ time: -1 }), /time -1/],
    ['time fraction', with_({ time: 1.5 }), /time 1.5/],
    ['time unsafe', with_({ time: 2 ** 53 }), /time/],
    ['origin empty', with_({ origin: '' }), /origin ""/],
    ['origin long', with_({ origin: 'A'.repeat(129) }), /origin/],
    ['origin space', with_({ origin: 'A B' }), /origin/],
    ['origin non-ASCII', with_({ origin: 'SITÉ' }), /origin/],
    ['origin control', with_({ origin: 'A\n' }), /origin/],
    ['bad parent', with_({ parent: 'x' as SnapshotId }), /parent "x"/],
    ['own parent', with_({ parent: s.id }), /its own parent/],
    ['no members', with_({ members: [] }), /0 members/],
    ['duplicate members', with_({ members: [s.members[0], { ...s.members[1], name: s.members[0].name }] }), /appears twice/],
    ['bad member name', with_({ members: [{ ...s.members[0], name: 'a/b' }] }), /member name "a\/b"/],
    ['bad member kind', with_({ members: [{ ...s.members[0], kind: 'disk' as never }] }), /unknown kind "disk"/],
    ['bad member root', with_({ members: [{ ...s.members[0], root: 'r' as ObjectId }] }), /root is not an object id/],
    ['too many members', with_({ members: Array.from({ length: 4097 }, (_, i) => ({ name: `m${i}`, kind: 'tree' as const, root: id('1') })) }), /4097 members/],
  ];
  for (const [what, m, re] of invalid) {
    test(`encode rejects: ${what}`, () => assertCorrupt(() => encodeSnapshot(m), re));
  }

  test('errors from name parsing are OBJECT_CORRUPT, not USAGE', () => {
    assertCorrupt(() => encodeSnapshot(with_({ volume: '' })));
  });

  test('decode rejects the same in bytes', () => {
    const str = (v: string | Buffer) => lp(typeof v === 'string' ? B(v) : v);
    const raw = (o: { id?: string | Buffer; volume?: string | Buffer; nameFlag?: number; name?: string; origin?: string | Buffer; parentFlag?: number; parent?: string; members?: Buffer[]; count?: number }): Buffer => {
      const members = o.members ?? [cat(str('m'), [1], rawId(id('1')))];
      return cat(
        hdr('FSNP'),
        str(o.id ?? s.id),
        str(o.volume ?? 'vol'),
        [o.nameFlag ?? (o.name === undefined ? 0 : 1)],
        o.name === undefined ? [] : str(o.name),
        vi(7),
        str(o.origin ?? 'SITE'),
        [o.parentFlag ?? (o.parent === undefined ? 0 : 1)],
        o.parent === undefined ? [] : str(o.parent),
        vi(o.count ?? members.length),
        ...members,
      );
    };
    assert.deepStrictEqual(decodeSnapshot(raw({ name: 'n' })), {
      id: s.id,
      volume: 'vol',
      name: 'n',
      time: 7,
      origin: 'SITE',
      parent: null,
      members: [{ name: 'm', kind: 'tree', root: id('1') }],
    });
    assertCorrupt(() => decodeSnapshot(raw({ id: s.id.toLowerCase() })), /canonical/);
    assertCorrupt(() => decodeSnapshot(raw({ id: 'x' })), /not a snapshot id/);
    assertCorrupt(() => decodeSnapshot(raw({ volume: '..' })), /volume name/);
    assertCorrupt(() => decodeSnapshot(raw({ volume: B([0x61, 0xc3, 0xa9]) })), /volume name/);
    assertCorrupt(() => decodeSnapshot(raw({ origin: B([0x41, 0x80]) })), /origin/);
    assertCorrupt(() => decodeSnapshot(raw({ origin: '' })), /origin/);
    assertCorrupt(() => decodeSnapshot(raw({ nameFlag: 2 })), /name present flag is 2/);
    assertCorrupt(() => decodeSnapshot(raw({ parentFlag: 3 })), /parent present flag is 3/);
    assertCorrupt(() => decodeSnapshot(raw({ parent: s.id })), /its own parent/);
    assertCorrupt(() => decodeSnapshot(raw({ members: [] })), /0 members/);
    assertCorrupt(() => decodeSnapshot(raw({ members: [cat(str('m'), [3], rawId(id('1')))] })), /unknown kind code 3/);
    assertCorrupt(() => decodeSnapshot(raw({ members: [cat(str('m'), [1], rawId(id('1'))), cat(str('m'), [2], rawId(id('2')))] })), /appears twice/);
    assertCorrupt(() => decodeSnapshot(raw({ count: 1000 })), /cannot fit/);
    assertCorrupt(() => decodeSnapshot(raw({ count: 4097 })), /4097 members/);
  });
});

// --------------------------------------------------------- performance

test('a 50,000-entry tree encodes and decodes quickly', (t) => {
  const entries: TreeEntry[] = [];
  for (let i = 0; i < 50_000; i++) {
    const name = B(`file-${String(i).padStart(6, '0')}.dat`);
    entries.push(
      i % 10 === 0
        ? base(name, { type: 'dir', mode: 0o755, uid: 1000, gid: 1000, mtimeNs: 1767225600123456789n + BigInt(i), tree: id((i % 16).toString(16)) })
        : base(name, { type: 'file', uid: 1000, gid: 1000, mtimeNs: 1767225600123456789n + BigInt(i), size: 4096 + i, chunks: [id((i % 16).toString(16))] }),
    );
  }
  const tree = { entries };
  encodeTree(tree); // warm up
  const t0 = performance.now();
  const bytes = encodeTree(tree);
  const t1 = performance.now();
  const back = decodeTree(bytes);
  const t2 = performance.now();
  assert.equal(back.entries.length, 50_000);
  assert.deepStrictEqual(back.entries[12345], entries[12345]);
  t.diagnostic(`50k entries: ${bytes.length} bytes, encode ${(t1 - t0).toFixed(1)} ms, decode ${(t2 - t1).toFixed(1)} ms`);
});
