// Fuzz targets for the object formats (src/snapshot/format.ts): trees,
// images, block lists and snapshot manifests, as read from the store or from
// a peer. Besides refusing with OBJECT_CORRUPT or FORMAT_VERSION, a decoder
// promises canonical encodings: whatever it accepts, the encoder gives back
// byte for byte (a second encoding of one value would be a second id).
import { readFileSync } from 'node:fs';
import {
  decodeBlockList, decodeImage, decodeSnapshot, decodeTree, decodeTreeIndex, encodeTreeIndex, encodeBlockList, encodeImage, encodeSnapshot, encodeTree, sniffObjectKind, type FormatKind,
} from '../../../src/snapshot/format.ts';
import * as golden from '../../fixtures/format-v1/values.ts';
import { blockListArb, imageArb, sampleEncoded, snapshotArb, treeArb, treeIndexArb } from '../arbitraries.ts';
import { FuzzViolation, type FuzzTarget } from '../engine.ts';
import fc from 'fast-check';

const FIXTURES = new URL('../../fixtures/format-v1/', import.meta.url);
const MAGICS = ['FTRE', 'FTRP', 'FTRI', 'FIMG', 'FBLK', 'FSNP'].map((m) => Buffer.from(m, 'latin1'));

function formatTarget<T>(kind: FormatKind, about: string, decode: (b: Uint8Array) => T, encode: (v: T) => Buffer, arb: fc.Arbitrary<T>, value: T, fixture = true): FuzzTarget {
  return {
    name: kind,
    about,
    codes: ['OBJECT_CORRUPT', 'FORMAT_VERSION'],
    kind: 'bytes',
    maxLength: 64 * 1024,
    dictionary: [...MAGICS, Buffer.from([1]), Buffer.from([2]), Buffer.alloc(32, 0xab)],
    seeds: () => [...(fixture ? [readFileSync(new URL(`${kind}.bin`, FIXTURES))] : []), encode(value), ...sampleEncoded(arb, encode, 1, 16)],
    generate: (seed, n) => sampleEncoded(arb, encode, seed, n),
    run(input) {
      const sniffed = sniffObjectKind(input);
      const v = decode(input);
      if (sniffed !== kind) throw new FuzzViolation(`decoded a ${kind} whose magic sniffs as ${sniffed}`);
      if (!encode(v).equals(input)) throw new FuzzViolation(`the ${kind} decoder accepted a non-canonical encoding`);
      return v;
    },
  };
}

export const formatTargets: FuzzTarget[] = [
  formatTarget('tree', 'decodeTree (+ sniffObjectKind): a directory, from the store or a peer', decodeTree, encodeTree, treeArb, golden.tree),
  formatTarget('treeindex', 'decodeTreeIndex: the pages of a large directory, from the store or a peer', decodeTreeIndex, encodeTreeIndex, treeIndexArb, fc.sample(treeIndexArb, { seed: 7, numRuns: 1 })[0], false),
  formatTarget('image', 'decodeImage: an image member manifest', decodeImage, encodeImage, imageArb, golden.image),
  formatTarget('blocklist', 'decodeBlockList: 4096 image blocks and their presence bitmap', decodeBlockList, encodeBlockList, blockListArb, golden.blocklist),
  formatTarget('snapshot', 'decodeSnapshot: a snapshot manifest', decodeSnapshot, encodeSnapshot, snapshotArb, golden.snapshot),
];
