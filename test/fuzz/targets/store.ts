// Fuzz targets for what the store reads from disk: pack records and whole
// pack files (src/store/pack.ts), the stat cache (src/snapshot/stat-cache.ts),
// and the bounded zstd decoding with the checks an untrusted object gets
// (src/store/codec.ts through verifyObject, the receiver's check). Records
// carry a CRC, which random bytes almost never match: each input is also
// tried with its CRCs recomputed, so the checks behind the CRC are reached.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants as zc, crc32, zstdCompressSync } from 'node:zlib';
import fc from 'fast-check';
import { hashBytes, objectIdFromBytes, objectIdToBytes, type ObjectId } from '../../../src/core/ids.ts';
import { encodeTree } from '../../../src/snapshot/format.ts';
import { decodeDirCache, encodeDirCache, type CachedFile } from '../../../src/snapshot/stat-cache.ts';
import {
  KIND_CODES, PACK_HEADER_SIZE, PackWriter, RECORD_HEADER_SIZE, RECORD_TRAILER_SIZE, checkPackHeader, parseRecordBuffer, parseRecordHeader, recordLength, scanPack,
} from '../../../src/store/pack.ts';
import { CODEC_NONE, CODEC_ZSTD } from '../../../src/store/types.ts';
import { verifyObject } from '../../../src/replication/verify-pool.ts';
import * as golden from '../../fixtures/format-v1/values.ts';
import { entryNameBytesArb, objectIdArb } from '../arbitraries.ts';
import { FuzzViolation, type FuzzTarget } from '../engine.ts';

/** Objects of every kind and both codecs, as the store writes them. */
function sampleObjects(): Array<{ kind: keyof typeof KIND_CODES; raw: Buffer; zstd: boolean }> {
  const text = Buffer.from('ferry '.repeat(200));
  return [
    { kind: 'chunk', raw: Buffer.from('hello, ferry'), zstd: false },
    { kind: 'chunk', raw: text, zstd: true },
    { kind: 'tree', raw: encodeTree(golden.tree), zstd: false },
    { kind: 'tree', raw: Buffer.concat([encodeTree(golden.tree), text]), zstd: true },
    { kind: 'chunk', raw: Buffer.alloc(0), zstd: false },
  ];
}

/** A real pack file's bytes (PackWriter), holding `sampleObjects`. */
function samplePack(): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-fuzz-pack-'));
  try {
    const path = join(dir, 'seed.pack');
    const w = new PackWriter(path, 'seed', { io: { write: writeSync, fsync: () => {}, fsyncDir: () => {} } });
    for (const o of sampleObjects()) {
      const stored = o.zstd ? zstdCompressSync(o.raw, { params: { [zc.ZSTD_c_compressionLevel]: 3 } }) : o.raw;
      w.append(KIND_CODES[o.kind], o.zstd ? CODEC_ZSTD : CODEC_NONE, o.raw.length, objectIdToBytes(hashBytes(o.raw)), stored);
    }
    w.seal();
    return readFileSync(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The records of a pack (after its header), each as its own buffer. */
function recordsOf(pack: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = PACK_HEADER_SIZE; at < pack.length; ) {
    const h = parseRecordHeader(pack, at);
    if (typeof h === 'string') break;
    const len = recordLength(h.storedLength);
    out.push(pack.subarray(at, at + len));
    at += len;
  }
  return out;
}

/** A copy of `b` with the CRC of every record that frames (from `at`) recomputed. */
function withCrcsFixed(b: Buffer, at: number): Buffer {
  const out = Buffer.from(b);
  while (at + RECORD_HEADER_SIZE <= out.length) {
    const h = parseRecordHeader(out, at);
    if (typeof h === 'string') break;
    const body = RECORD_HEADER_SIZE + h.storedLength;
    if (at + body + RECORD_TRAILER_SIZE > out.length) break;
    out.writeUInt32LE(crc32(out.subarray(at, at + body)), at + body);
    at += body + RECORD_TRAILER_SIZE;
  }
  return out;
}

/** Largest raw length whose decoding the record targets try (the wire's limit is 64 MiB; these inputs are small). */
const DECODE_LIMIT = 16 * 1024 * 1024;

function checkRecord(rec: Buffer): void {
  const h = parseRecordHeader(rec);
  if (typeof h === 'string') return;
  const r = parseRecordBuffer(rec, h.storedLength, true);
  if (typeof r === 'string') return;
  if (r.stored.length !== h.storedLength || r.id.length !== 32) throw new FuzzViolation('parsed record does not match its header');
  if (r.rawLength > DECODE_LIMIT) return;
  // What the store and the receiver then do with it: decode with a bound, and hash.
  const why = verifyObject({ id: objectIdFromBytes(r.id), codec: r.codec, rawLength: r.rawLength, stored: r.stored });
  if (why !== null && typeof why !== 'string') throw new FuzzViolation('verifyObject returned neither null nor a reason');
}

const RECORD_DICTIONARY = [Buffer.from('FREC'), Buffer.from('FERRYPK\0'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.from([1, 0, 0, 0])];

const packRecord: FuzzTarget = {
  name: 'pack-record',
  about: 'parseRecordHeader / parseRecordBuffer, then verifyObject (bounded zstd decode, hash): one record read from a pack',
  codes: [],
  kind: 'bytes',
  maxLength: 256 * 1024,
  dictionary: RECORD_DICTIONARY,
  memoryAllowance: DECODE_LIMIT * 2,
  seeds: () => recordsOf(samplePack()),
  run(input) {
    checkRecord(input);
    checkRecord(withCrcsFixed(input, 0));
  },
};

let packDir: string | undefined;

const packFile: FuzzTarget = {
  name: 'pack-file',
  about: 'checkPackHeader + scanPack over a whole pack file on disk (torn tails, damaged records)',
  codes: ['PACK_CORRUPT', 'FORMAT_VERSION'],
  kind: 'bytes',
  maxLength: 256 * 1024,
  dictionary: RECORD_DICTIONARY,
  seeds: () => {
    const pack = samplePack();
    return [pack, pack.subarray(0, pack.length - 7), Buffer.concat([pack, pack.subarray(PACK_HEADER_SIZE)])];
  },
  setup() {
    packDir = mkdtempSync(join(tmpdir(), 'ferry-fuzz-packs-'));
  },
  teardown() {
    if (packDir) rmSync(packDir, { recursive: true, force: true });
    packDir = undefined;
  },
  run(input) {
    if (!packDir) throw new Error('pack-file target used without setup');
    for (const bytes of [input, withCrcsFixed(input, PACK_HEADER_SIZE)]) {
      checkPackHeader(bytes.subarray(0, PACK_HEADER_SIZE * 2), 'fuzz input');
      const path = join(packDir, 'input.pack');
      writeFileSync(path, bytes);
      const seen: number[] = [];
      const r = scanPack(path, (rec) => seen.push(rec.offset));
      if (r.records !== seen.length || r.goodEnd > r.size || r.size !== bytes.length) throw new FuzzViolation('scanPack result is inconsistent');
      if (r.badOffset === undefined && r.goodEnd !== r.size) throw new FuzzViolation('scanPack stopped early without naming a bad offset');
      if (r.badOffset !== undefined && (r.badOffset !== r.goodEnd || !r.reason)) throw new FuzzViolation('scanPack named a bad offset without a reason');
    }
  },
};

const cachedFileArb: fc.Arbitrary<CachedFile> = fc.record({
  size: fc.maxSafeNat(),
  mtimeNs: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  ctimeNs: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  ino: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  chunks: fc.array(objectIdArb, { maxLength: 3 }),
});
const dirCacheArb = fc.uniqueArray(fc.tuple(entryNameBytesArb, cachedFileArb), { maxLength: 6, selector: ([n]) => n.toString('latin1') });

const statCache: FuzzTarget = {
  name: 'stat-cache',
  about: 'decodeDirCache: one directory of the stat cache, read from the catalog',
  codes: ['CATALOG_CORRUPT'],
  kind: 'bytes',
  maxLength: 64 * 1024,
  seeds: () => [encodeDirCache([]), ...fc.sample(dirCacheArb, { seed: 1, numRuns: 12 }).map(encodeDirCache)],
  generate: (seed, n) => fc.sample(dirCacheArb, { seed, numRuns: n }).map(encodeDirCache),
  run(input) {
    const m = decodeDirCache(input);
    for (const f of m.values()) {
      if (!f.chunks.every((c: ObjectId) => /^[0-9a-f]{64}$/.test(c))) throw new FuzzViolation('stat cache decoded a chunk id that is not 64 hex digits');
    }
    return m;
  },
};

export const storeTargets: FuzzTarget[] = [packRecord, packFile, statCache];
