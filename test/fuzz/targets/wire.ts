// Fuzz targets for the replication wire (src/replication/protocol.ts and
// delta.ts, src/transport/http.ts): object streams cut into arbitrary pieces,
// deltas with hostile references and dictionary ranges, id lists and
// bitmaps, the JSON requests a peer sends (hello, commit, events query) and
// the answers a peer gives (errors, long answers). Every refusal must be a
// FerryError; memory is bounded by the declared sizes the protocol allows.
import { constants as zc, zstdCompressSync } from 'node:zlib';
import fc from 'fast-check';
import { ERRORS, FerryError } from '../../../src/core/errors.ts';
import { hashBytes, type ObjectId } from '../../../src/core/ids.ts';
import {
  MAX_DELTA_DICT_BYTES, MAX_IDS_PER_QUERY, MAX_OBJECT_BYTES, decodeBitmap, decodeIds, decodeObjectStream, encodeBitmap, encodeIds, encodeObjectHeader, isDelta, parseAnswer, parseCommitRequest,
  parseCommitResponse, parseHelloRequest, parseHelloResponse, parseJson, parsePutResult, wirePayload, type WireObject,
} from '../../../src/replication/protocol.ts';
import { makeDelta, resolveDelta, type DeltaStore } from '../../../src/replication/delta.ts';
import { verifyObject } from '../../../src/replication/verify-pool.ts';
import { encodeTree } from '../../../src/snapshot/format.ts';
import { errorFromBody, parseLongAnswer } from '../../../src/transport/http.ts';
import { parseEventQuery } from '../../../src/site/log.ts';
import { StreamBudget } from '../../../src/transport/stream-budget.ts';
import { CODEC_NONE, CODEC_ZSTD, type PreparedObject } from '../../../src/store/types.ts';
import * as golden from '../../fixtures/format-v1/values.ts';
import { ferryNameArb, objectIdArb, snapshotIdArb } from '../arbitraries.ts';
import { FuzzViolation, type FuzzTarget } from '../engine.ts';

// ---- objects and deltas made by the real encoders

function textBytes(n: number, seed: number): Buffer {
  const words = ['ferry', 'replica', 'snapshot', 'base', 'mirror', 'chunk', 'tree', 'site'];
  const out: string[] = [];
  let x = seed;
  while (out.join(' ').length < n) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.push(words[x % words.length] + (x % 97));
  }
  return Buffer.from(out.join(' ').slice(0, n));
}

/** References the receiver holds, and objects that are deltas against them. */
const BASE = textBytes(24 * 1024, 1);
const BASE2 = textBytes(8 * 1024, 2);
const REFS = new Map<ObjectId, Buffer>([
  [hashBytes(BASE), BASE],
  [hashBytes(BASE2), BASE2],
]);
const refStore: DeltaStore = {
  has: (id) => REFS.has(id),
  get: (id) => {
    const b = REFS.get(id);
    if (!b) throw new FerryError('OBJECT_NOT_FOUND', `no object ${id}`);
    return b;
  },
};

function changed(base: Buffer, at: number, text: string): Buffer {
  const out = Buffer.from(base);
  out.write(text, at);
  return out;
}

function sampleDeltas(): WireObject[] {
  const out: WireObject[] = [];
  const refs = [...REFS.keys()];
  const cases: Array<{ raw: Buffer; plan: { refs: ObjectId[]; offset: number; length: number } }> = [
    { raw: changed(BASE, 5000, 'a rewritten region of the file'), plan: { refs: [refs[0]], offset: 0, length: BASE.length } },
    { raw: Buffer.concat([BASE.subarray(20000), BASE2.subarray(0, 3000), Buffer.from('new tail')]), plan: { refs, offset: 20000, length: BASE.length - 20000 + BASE2.length } },
    { raw: changed(BASE2, 100, 'x'), plan: { refs: [refs[1]], offset: 0, length: 4096 } },
  ];
  for (const c of cases) {
    const d = makeDelta(refStore, { kind: 'chunk', id: hashBytes(c.raw), raw: c.raw, storedLength: c.raw.length }, c.plan);
    if (d) out.push(d);
  }
  if (out.length === 0) throw new Error('no delta paid off for the fuzz seeds');
  return out;
}

function sampleObjects(): WireObject[] {
  const plain = (kind: PreparedObject['kind'], raw: Buffer): WireObject => ({ kind, id: hashBytes(raw), rawLength: raw.length, codec: CODEC_NONE, stored: raw }) as PreparedObject;
  const zstd = (kind: PreparedObject['kind'], raw: Buffer): WireObject =>
    ({ kind, id: hashBytes(raw), rawLength: raw.length, codec: CODEC_ZSTD, stored: zstdCompressSync(raw, { params: { [zc.ZSTD_c_compressionLevel]: 3 } }) }) as PreparedObject;
  return [plain('chunk', Buffer.from('hello')), zstd('chunk', textBytes(6000, 3)), plain('tree', encodeTree(golden.tree)), plain('chunk', Buffer.alloc(0)), ...sampleDeltas()];
}

function record(o: WireObject): Buffer {
  return Buffer.concat([encodeObjectHeader(o), ...wirePayload(o)]);
}

/** Piece sizes to cut a stream into: the cut must not change what is decoded. */
const PIECES = [1, 7, 42, 43, 4096, 65536, 3, 1 << 20];

async function* pieces(b: Buffer, salt: number): AsyncGenerator<Buffer> {
  let k = salt;
  for (let at = 0; at < b.length; ) {
    const n = PIECES[k++ % PIECES.length];
    yield b.subarray(at, at + n);
    at += n;
  }
}

/** What the receiver does with a decoded object: rebuild a delta, or verify an object as sent. */
function intake(o: WireObject): void {
  if (o.rawLength > MAX_OBJECT_BYTES) throw new FuzzViolation(`decoded an object of ${o.rawLength} raw bytes, over the limit`);
  if (isDelta(o)) {
    if (o.dictOffset + o.dictLength > MAX_DELTA_DICT_BYTES || o.refs.length < 1) throw new FuzzViolation('decoded a delta out of its bounds');
    const p = resolveDelta(refStore, o);
    if (p.rawLength !== o.rawLength) throw new FuzzViolation('a rebuilt delta changed its length');
    return;
  }
  const why = verifyObject({ id: o.id, codec: o.codec, rawLength: o.rawLength, stored: o.stored });
  if (why !== null) throw new FerryError('OBJECT_CORRUPT', why);
}

const budget = new StreamBudget();
const WIRE_DICTIONARY = [Buffer.from([0, 0]), Buffer.from([0, 1]), Buffer.from([0, 2]), Buffer.from([1, 0]), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), ...[...REFS.keys()].map((id) => Buffer.from(id, 'hex'))];

async function decodeAll(input: Buffer, salt: number): Promise<number> {
  const account = budget.open({});
  let n = 0;
  try {
    for await (const o of decodeObjectStream(pieces(input, salt), { budget: account })) {
      intake(o);
      n++;
    }
  } finally {
    account.close();
  }
  return n;
}

const objectStream: FuzzTarget = {
  name: 'object-stream',
  about: 'decodeObjectStream over arbitrary cuts, with the daemon\'s stream budget, then each object verified (bounded zstd) or its delta rebuilt',
  codes: ['PROTOCOL', 'TRANSFER_INTERRUPTED', 'OBJECT_CORRUPT', 'PEER_BUSY'],
  kind: 'bytes',
  maxLength: 512 * 1024,
  dictionary: WIRE_DICTIONARY,
  // one object may be declared up to 64 MiB raw and is then decoded (or rebuilt) within that bound
  memoryAllowance: 2 * MAX_OBJECT_BYTES + MAX_DELTA_DICT_BYTES,
  seeds: () => {
    const objs = sampleObjects();
    return [...objs.map(record), Buffer.concat(objs.map(record)), Buffer.alloc(0)];
  },
  async run(input) {
    await decodeAll(input, input.length);
  },
};

/** A delta record from [id 32][raw length u32][payload]: the header is made, the payload is the input's. */
function deltaRecord(input: Buffer): Buffer {
  const head = Buffer.alloc(42);
  head[0] = 0; // chunk
  head[1] = 2; // WIRE_DELTA
  const raw = input.length >= 36 ? input.readUInt32LE(32) : 0;
  head.writeUInt32LE(raw, 2);
  const payload = input.subarray(36);
  head.writeUInt32LE(payload.length, 6);
  input.copy(head, 10, 0, Math.min(32, input.length));
  return Buffer.concat([head, payload]);
}

const delta: FuzzTarget = {
  name: 'delta',
  about: 'a delta record (references, dictionary range, zstd frame) rebuilt against the references held: hostile refs and ranges',
  codes: ['PROTOCOL', 'OBJECT_CORRUPT', 'TRANSFER_INTERRUPTED'],
  kind: 'bytes',
  maxLength: 128 * 1024,
  dictionary: WIRE_DICTIONARY,
  memoryAllowance: 2 * MAX_OBJECT_BYTES + MAX_DELTA_DICT_BYTES,
  seeds: () =>
    sampleDeltas().map((d) => {
      const head = Buffer.alloc(36);
      head.write(d.id, 0, 'hex');
      head.writeUInt32LE(d.rawLength, 32);
      return Buffer.concat([head, ...wirePayload(d)]);
    }),
  async run(input) {
    await decodeAll(deltaRecord(input), 0);
  },
};

const ids: FuzzTarget = {
  name: 'ids',
  about: 'decodeIds (a "which do you lack" question) and decodeBitmap (its answer, for n ids)',
  codes: ['PROTOCOL'],
  kind: 'bytes',
  maxLength: MAX_IDS_PER_QUERY * 32 + 64,
  seeds: () => {
    const list = fc.sample(objectIdArb, { seed: 1, numRuns: 9 });
    const head = Buffer.alloc(4);
    head.writeUInt32LE(9);
    return [Buffer.concat([head, encodeIds(list)]), Buffer.concat([head, encodeBitmap([true, false, true, true, false, false, false, true, true])]), head];
  },
  run(input) {
    const n = input.length >= 4 ? input.readUInt32LE(0) % (MAX_IDS_PER_QUERY * 2) : 0;
    const body = input.subarray(4);
    let firstError: unknown;
    try {
      const list = decodeIds(body);
      if (!encodeIds(list).equals(body)) throw new FuzzViolation('decodeIds does not round-trip');
    } catch (err) {
      firstError = err;
    }
    const bits = decodeBitmap(body, n);
    if (bits.length !== n) throw new FuzzViolation('decodeBitmap answered another number of ids');
    if (firstError) throw firstError;
  },
};

// ---- JSON requests and answers

const siblingArb = fc.record({
  site: fc.array(fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'), { minLength: 52, maxLength: 52 }).map((a) => a.join('')),
  volume: ferryNameArb,
  scheduleS: fc.option(fc.integer({ min: 0, max: 86400 }), { nil: null }),
  minDelayS: fc.integer({ min: 0, max: 86400 }),
  maxDelayS: fc.integer({ min: 0, max: 86400 }),
  bandwidth: fc.option(fc.integer({ min: 1, max: 2 ** 40 }), { nil: null }),
  keep: fc.option(fc.integer({ min: 1, max: 64 }), { nil: null }),
});
const helloArb = fc.record(
  {
    protocol: fc.constant(1),
    sourceVolume: ferryNameArb,
    volume: ferryNameArb,
    members: fc.uniqueArray(fc.record({ name: ferryNameArb, kind: fc.constantFrom('tree', 'image') }), { minLength: 1, maxLength: 3, selector: (m) => m.name }),
    keep: fc.integer({ min: 1, max: 64 }),
    siblings: fc.array(siblingArb, { maxLength: 2 }),
  },
  { requiredKeys: ['protocol', 'sourceVolume', 'volume', 'members'] },
);
const commitArb = fc.record(
  { snapshot: snapshotIdArb, manifest: objectIdArb, force: fc.boolean(), peer: fc.boolean(), baseline: fc.boolean() },
  { requiredKeys: ['snapshot', 'manifest'] },
);
const eventsArb = fc.record(
  { volume: ferryNameArb, kind: fc.constantFrom('mirror', 'snapshot.create', 'daemon'), sinceSeconds: fc.nat(), after: fc.nat(), limit: fc.integer({ min: 1, max: 1000 }) },
  { requiredKeys: [] },
);
const requestArb = fc.oneof(helloArb, commitArb, eventsArb);

const REQUEST_KEYS = [
  'protocol', 'sourceVolume', 'volume', 'members', 'name', 'kind', 'tree', 'image', 'keep', 'siblings', 'site', 'scheduleS', 'minDelayS', 'maxDelayS', 'bandwidth',
  'snapshot', 'manifest', 'force', 'peer', 'baseline', 'sinceSeconds', 'after', 'limit', 'result', 'error', 'code', 'message', 'details', '__proto__',
].map((k) => Buffer.from(k));

const requests: FuzzTarget = {
  name: 'requests',
  about: 'a peer\'s JSON request body (parseJson, 1 MiB), each validator on it: hello, commit, events query',
  codes: ['PROTOCOL', 'FORMAT_VERSION'],
  kind: 'json',
  maxLength: 1024 * 1024 + 16,
  dictionary: REQUEST_KEYS,
  seeds: () => fc.sample(requestArb, { seed: 1, numRuns: 24 }).map((v) => Buffer.from(JSON.stringify(v))),
  generate: (seed, n) => fc.sample(requestArb, { seed, numRuns: n }).map((v) => Buffer.from(JSON.stringify(v))),
  run(input) {
    const v = parseJson(input, 'request');
    // Each validator sees every body; the input counts as accepted when one of them took it.
    let refusal: unknown;
    let accepted = false;
    for (const parse of [parseHelloRequest, parseCommitRequest, parseEventQuery] as Array<(v: unknown) => unknown>) {
      try {
        parse(v);
        accepted = true;
      } catch (err) {
        if (!(err instanceof FerryError)) throw err;
        refusal ??= err;
      }
    }
    if (!accepted) throw refusal;
  },
};

/** A peer's answer is untrusted too: an error body becomes a FerryError of a real code, never anything else. */
function checkPeerError(e: unknown): void {
  if (!(e instanceof FerryError)) throw new FuzzViolation('a peer error did not become a FerryError');
  if (!Object.hasOwn(ERRORS, e.code) || e.kind !== ERRORS[e.code].kind) throw new FuzzViolation(`a peer error became a FerryError with code ${String(e.code)}, which is not a ferry error code`);
  if (e.message.length > 4000) throw new FuzzViolation('a peer error message was not cut short');
}

const answerArb = fc.oneof(
  fc.record({ result: fc.jsonValue() }),
  fc.record({
    protocol: fc.constant(1), volume: ferryNameArb, snapshots: fc.array(fc.record({ id: snapshotIdArb, name: fc.option(ferryNameArb, { nil: null }), time: fc.maxSafeNat() }), { maxLength: 3 }),
    applied: fc.option(snapshotIdArb, { nil: null }), applying: fc.boolean(), replicas: fc.array(fc.record({ name: ferryNameArb, kind: fc.constantFrom('tree', 'image'), path: fc.constant('/r/v/d') }), { maxLength: 2 }), delta: fc.boolean(),
  }),
  fc.record({ received: fc.nat(), stored: fc.nat(), bytes: fc.maxSafeNat() }),
  fc.record({ snapshot: snapshotIdArb, applied: fc.boolean(), writesSnapshot: ferryNameArb, refused: fc.string(), phases: fc.dictionary(fc.constantFrom('check', 'apply', 'verify'), fc.double()) }, { requiredKeys: ['snapshot', 'applied'] }),
  fc.record({ error: fc.record({ code: fc.constantFrom(...Object.keys(ERRORS)), message: fc.string(), details: fc.dictionary(fc.string(), fc.jsonValue()) }, { requiredKeys: ['code', 'message'] }) }),
);

const peerAnswer: FuzzTarget = {
  name: 'peer-answer',
  about: 'what a peer answers: an error body (errorFromBody), a long answer (parseLongAnswer), the answers to hello, put and commit',
  codes: ['PROTOCOL'],
  kind: 'json',
  maxLength: 64 * 1024,
  dictionary: REQUEST_KEYS,
  seeds: () => fc.sample(answerArb, { seed: 1, numRuns: 16 }).map((v) => Buffer.from(`   ${JSON.stringify(v)}`)),
  generate: (seed, n) => fc.sample(answerArb, { seed, numRuns: n }).map((v) => Buffer.from(JSON.stringify(v))),
  run(input) {
    for (const status of [400, 403, 422, 500, 503]) checkPeerError(errorFromBody(status, input, 'peer'));
    const r = parseLongAnswer(input, 'peer');
    if (!Buffer.isBuffer(r)) checkPeerError(r);
    // accepted when one of the answer checks takes it
    const v = parseAnswer(Buffer.isBuffer(r) ? r : input, 'answer');
    let refusal: unknown;
    for (const parse of [parseHelloResponse, parsePutResult, parseCommitResponse] as Array<(v: unknown) => unknown>) {
      try {
        return parse(v);
      } catch (err) {
        if (!(err instanceof FerryError)) throw err;
        refusal ??= err;
      }
    }
    throw refusal;
  },
};

export const wireTargets: FuzzTarget[] = [objectStream, delta, ids, requests, peerAnswer];
