// Valid values of ferry's structured objects as fast-check arbitraries, for
// the fuzzer's structure-aware inputs: every value here encodes (the real
// encoders accept it), and mutations of its bytes reach deep into the
// decoders instead of stopping at the header.
import fc from 'fast-check';
import type { ObjectId, SnapshotId } from '../../src/core/ids.ts';
import { BLOCKS_PER_LIST, type BlockList, type ImageManifest, type SnapshotManifest, type Tree, type TreeEntry, type TreeIndex, type TreePage } from '../../src/snapshot/model.ts';

export const objectIdArb: fc.Arbitrary<ObjectId> = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex') as ObjectId);

/** A directory entry name: 1-12 bytes, no '/' or NUL, never '.' or '..'. */
export const entryNameBytesArb = fc.uint8Array({ minLength: 1, maxLength: 12 }).map((raw) => {
  const b = Buffer.from(raw.map((c) => (c === 0 ? 0x5f : c === 0x2f ? 0x2d : c)));
  return b.length <= 2 && b.every((c) => c === 0x2e) ? Buffer.concat([b, Buffer.from('_')]) : b;
});

const byteString = (min: number, max: number, noNul = true) =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(noNul ? b.map((c) => c || 1) : b));

const attrsArb: fc.Arbitrary<Array<[Buffer, Buffer]>> = fc
  .uniqueArray(fc.tuple(byteString(1, 10), byteString(0, 12, false)), { maxLength: 3, selector: ([k]) => k.toString('latin1') })
  .map((pairs) => pairs.sort(([a], [b]) => Buffer.compare(a, b)));

const I64 = 2n ** 63n;

const kindFieldsArb: fc.Arbitrary<Partial<TreeEntry>> = fc.oneof(
  fc.array(objectIdArb, { maxLength: 3 }).chain((chunks) => fc.nat().map((n) => ({ type: 'file' as const, size: chunks.length === 0 ? 0 : chunks.length + n, chunks }))),
  objectIdArb.map((tree) => ({ type: 'dir' as const, size: 0, tree })),
  byteString(1, 24).map((target) => ({ type: 'symlink' as const, size: target.length, target })),
  fc.array(entryNameBytesArb, { minLength: 1, maxLength: 3 }).map((parts) => ({ type: 'hardlink' as const, size: 0, target: Buffer.from(parts.map((p) => p.toString('latin1')).join('/'), 'latin1') })),
  fc.record({ type: fc.constantFrom('chardev' as const, 'blockdev' as const), size: fc.constant(0), rdev: fc.maxSafeNat() }),
  fc.record({ type: fc.constantFrom('fifo' as const, 'socket' as const), size: fc.constant(0) }),
);

const entryArb = (name: Buffer): fc.Arbitrary<TreeEntry> =>
  fc
    .tuple(
      fc.record({
        mode: fc.integer({ min: 0, max: 0o7777 }),
        uid: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff_ffff })),
        gid: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff_ffff })),
        mtimeNs: fc.bigInt({ min: -I64, max: I64 - 1n }),
        xattrs: attrsArb,
      }),
      kindFieldsArb,
    )
    .map(([common, fields]) => ({ name, ...common, ...fields }) as TreeEntry);

export const treeArb: fc.Arbitrary<Tree> = fc
  .uniqueArray(entryNameBytesArb, { maxLength: 6, selector: (n) => n.toString('latin1') })
  .chain((names) => fc.tuple(...names.sort(Buffer.compare).map(entryArb)))
  .map((entries) => ({ entries }));

/** A tree index: 2-20 pages over sorted unique names, each page one name or two. */
export const treeIndexArb: fc.Arbitrary<TreeIndex> = fc
  .tuple(fc.uniqueArray(entryNameBytesArb, { minLength: 4, maxLength: 40, comparator: (a, b) => a.equals(b) }), fc.array(objectIdArb, { minLength: 40, maxLength: 40 }), fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }))
  .map(([names, ids, pairs]) => {
    const sorted = names.sort(Buffer.compare);
    const pages: TreePage[] = [];
    for (let i = 0; i < sorted.length; ) {
      const two = pairs[pages.length] && i + 1 < sorted.length;
      pages.push({ id: ids[pages.length], count: two ? 2 : 1, first: sorted[i], last: sorted[two ? i + 1 : i] });
      i += two ? 2 : 1;
    }
    return { count: pages.reduce((n, p) => n + p.count, 0), pages };
  })
  .filter((x) => x.pages.length >= 2);

export const imageArb: fc.Arbitrary<ImageManifest> = fc
  .tuple(fc.integer({ min: 12, max: 24 }), fc.integer({ min: 0, max: 3 }), fc.nat())
  .chain(([shift, lists, extra]) => {
    const blockSize = 2 ** shift;
    const span = blockSize * BLOCKS_PER_LIST;
    const size = lists === 0 ? 0 : (lists - 1) * span + 1 + (extra % span);
    return fc.array(objectIdArb, { minLength: lists, maxLength: lists }).map((ids) => ({ size, blockSize, lists: ids }));
  });

export const blockListArb: fc.Arbitrary<BlockList> = fc
  .array(fc.option(objectIdArb, { nil: null }), { minLength: 1, maxLength: 24 })
  .map((blocks) => ({ blocks }));

const ULID_CHARS = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
export const snapshotIdArb: fc.Arbitrary<SnapshotId> = fc
  .array(fc.constantFrom(...ULID_CHARS), { minLength: 25, maxLength: 25 })
  .chain((rest) => fc.integer({ min: 0, max: 7 }).map((d) => `${d}${rest.join('')}` as SnapshotId));

/** A ferry name: a letter or digit, then up to 40 of [A-Za-z0-9._@+-]. */
export const ferryNameArb: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom(...'aZ09mX'), fc.array(fc.constantFrom(...'abcXYZ019._@+-'), { maxLength: 40 }))
  .map(([first, rest]) => first + rest.join(''));

export const snapshotArb: fc.Arbitrary<SnapshotManifest> = fc
  .record({
    id: snapshotIdArb,
    volume: ferryNameArb,
    name: fc.option(ferryNameArb, { nil: null }),
    time: fc.maxSafeNat(),
    origin: fc.array(fc.integer({ min: 0x21, max: 0x7e }), { minLength: 1, maxLength: 40 }).map((cs) => String.fromCharCode(...cs)),
    parent: fc.option(snapshotIdArb, { nil: null }),
    members: fc.uniqueArray(fc.record({ name: ferryNameArb, kind: fc.constantFrom('tree' as const, 'image' as const), root: objectIdArb }), {
      minLength: 1,
      maxLength: 4,
      selector: (m) => m.name,
    }),
  })
  .filter((s) => s.parent !== s.id);

/** `n` values of `arb` from `seed`, each made into bytes by `encode`. */
export function sampleEncoded<T>(arb: fc.Arbitrary<T>, encode: (v: T) => Buffer, seed: number, n: number): Buffer[] {
  return fc.sample(arb, { seed, numRuns: n }).map((v) => encode(v));
}
