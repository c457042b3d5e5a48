// The wire encodings of replication, and their validation. Everything read
// from the network passes through here before anyone acts on it: sizes are
// bounded before anything is allocated, kinds and codecs are checked, ids are
// exactly 32 bytes, and JSON messages are checked field by field.
import { FerryError } from '../core/errors.ts';
import { checkCount, checkScheduleSettings, COUNT } from '../core/units.ts';
import { objectIdFromBytes, objectIdToBytes, parseName, type ObjectId } from '../core/ids.ts';
import { CODEC_NONE, CODEC_ZSTD, OBJECT_KINDS, type Codec, type ObjectKind, type PreparedObject } from '../store/types.ts';
import { MAX_SNAPSHOT_MEMBERS } from '../snapshot/format.ts';
import { PROTOCOL_VERSION, type CommitRequest, type CommitResponse, type HelloRequest, type HelloResponse, type PutResult } from './types.ts';

/** Largest object accepted (raw or stored): trees of huge directories are the big ones. */
export const MAX_OBJECT_BYTES = 64 * 1024 * 1024;
/** Most ids in one `missing` question. */
export const MAX_IDS_PER_QUERY = 65536;
/** Largest JSON control message. */
export const MAX_JSON_BYTES = 1024 * 1024;

const RECORD_HEADER = 1 + 1 + 4 + 4 + 32;

function bad(msg: string): FerryError {
  return new FerryError('PROTOCOL', msg);
}

// ---- object stream: [kind u8][codec u8][raw u32][stored u32][id 32][stored bytes] ...

/** A memory budget for one stream (transport/stream-budget.ts): `hold(n)` says it now holds n bytes, and throws to refuse. */
export interface StreamHold {
  hold(bytes: number): void;
}

/**
 * Wire-only codec: the object as a zstd frame compressed against a dictionary
 * made of objects the receiver already holds (the same file's chunks, or the
 * same image blocks, in the common base). Payload: [ref count u8][ref ids,
 * 32 bytes each][zstd frame]. The receiver rebuilds the raw bytes, checks them
 * against the id, and stores them as any other object. Never stored as is.
 */
export const WIRE_DELTA = 2;
/** Most reference objects, and most reference bytes, one delta may name. */
export const MAX_DELTA_REFS = 8;
export const MAX_DELTA_DICT_BYTES = 16 * 1024 * 1024;

export interface DeltaObject {
  kind: ObjectKind;
  id: ObjectId;
  rawLength: number;
  codec: typeof WIRE_DELTA;
  /** the references, in order; the dictionary is [dictOffset, dictOffset + dictLength) of their concatenation */
  refs: ObjectId[];
  dictOffset: number;
  dictLength: number;
  /** the zstd frame */
  stored: Buffer;
}

/** Bytes of a delta's payload before its frame: ref count, refs, dictionary offset and length. */
export function deltaHeaderBytes(refs: number): number {
  return 1 + 32 * refs + 8;
}

/** What crosses the wire: an object as stored, or a delta against objects the receiver has. */
export type WireObject = PreparedObject | DeltaObject;

export function isDelta(o: WireObject): o is DeltaObject {
  return o.codec === WIRE_DELTA;
}

/** The record's payload: for a delta, its references then its frame. */
export function wirePayload(o: WireObject): Buffer[] {
  const stored = Buffer.from(o.stored.buffer, o.stored.byteOffset, o.stored.byteLength);
  if (!isDelta(o)) return [stored];
  const head = Buffer.allocUnsafe(deltaHeaderBytes(o.refs.length));
  head[0] = o.refs.length;
  o.refs.forEach((r, i) => objectIdToBytes(r).copy(head, 1 + 32 * i));
  head.writeUInt32LE(o.dictOffset, 1 + 32 * o.refs.length);
  head.writeUInt32LE(o.dictLength, 5 + 32 * o.refs.length);
  return [head, stored];
}

export function encodeObjectHeader(o: WireObject): Buffer {
  const h = Buffer.allocUnsafe(RECORD_HEADER);
  h[0] = OBJECT_KINDS.indexOf(o.kind);
  h[1] = o.codec;
  h.writeUInt32LE(o.rawLength, 2);
  h.writeUInt32LE(isDelta(o) ? deltaHeaderBytes(o.refs.length) + o.stored.byteLength : o.stored.byteLength, 6);
  objectIdToBytes(o.id).copy(h, 10);
  return h;
}

/**
 * Parse an object stream incrementally. Memory is bounded by one object
 * (MAX_OBJECT_BYTES, held twice while it is copied out) plus the piece being
 * read. Pieces are queued and joined once per object, never re-concatenated
 * per piece (that is quadratic: a 64 MiB object in 16 KiB frames would copy
 * 128 GiB and block the event loop for minutes).
 *
 * `budget`: told what the stream holds before it is read: from an object's
 * header on, its declared size (plus its raw length when it must be decoded),
 * so a budget that refuses (throws) does so before the body is buffered.
 */
export async function* decodeObjectStream(source: AsyncIterable<Buffer | Uint8Array>, options: { budget?: StreamHold } = {}): AsyncGenerator<WireObject> {
  const parts: Buffer[] = [];
  let have = 0;
  // bytes the object being read will take (0 between objects)
  let reserved = 0;
  const account = () => options.budget?.hold(Math.max(have, reserved));
  // The next n bytes (n <= have), always a fresh copy: the caller may keep an
  // object while we go on reading.
  const take = (n: number): Buffer => {
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    while (o < n) {
      const p = parts[0];
      const k = Math.min(p.length, n - o);
      p.copy(out, o, 0, k);
      o += k;
      if (k === p.length) parts.shift();
      else parts[0] = p.subarray(k);
    }
    have -= n;
    return out;
  };
  let need = RECORD_HEADER;
  let header: { kind: ObjectKind; codec: number; rawLength: number; storedLength: number; id: ObjectId } | undefined;
  // Iterated by hand, not with `for await`: when this generator stops on a refusal (here, or in
  // the consumer: a hash that does not match), `for await` would destroy the source, and a
  // destroyed HTTP/2 stream is reset before the error answer can be sent. The source is
  // released once the answer is out instead.
  const it = source[Symbol.asyncIterator]();
  let exhausted = false;
  try {
    for (;;) {
      const next = await it.next();
      if (next.done) break;
      const piece = next.value;
      if (piece.byteLength === 0) continue;
      parts.push(Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
      have += piece.byteLength;
      account();
      while (have >= need) {
        if (!header) {
          const h = take(RECORD_HEADER);
          const kindIdx = h[0];
          const codec = h[1];
          const rawLength = h.readUInt32LE(2);
          const storedLength = h.readUInt32LE(6);
          if (kindIdx >= OBJECT_KINDS.length) throw bad(`object stream: unknown object kind ${kindIdx}`);
          if (codec !== CODEC_NONE && codec !== CODEC_ZSTD && codec !== WIRE_DELTA) throw bad(`object stream: unknown codec ${codec}`);
          if (codec === WIRE_DELTA && (kindIdx !== OBJECT_KINDS.indexOf('chunk') || storedLength < deltaHeaderBytes(1))) throw bad('object stream: a delta must be a chunk with at least one reference');
          if (rawLength > MAX_OBJECT_BYTES || storedLength > MAX_OBJECT_BYTES) throw bad(`object stream: object of ${Math.max(rawLength, storedLength)} bytes exceeds the ${MAX_OBJECT_BYTES}-byte limit`);
          if (codec === CODEC_NONE && storedLength !== rawLength) throw bad('object stream: uncompressed object with stored length different from its raw length');
          header = { kind: OBJECT_KINDS[kindIdx], codec, rawLength, storedLength, id: objectIdFromBytes(h.subarray(10, 42)) };
          need = storedLength;
          reserved = RECORD_HEADER + storedLength + (codec === CODEC_NONE ? 0 : rawLength);
          account();
          continue;
        }
        const stored = take(header.storedLength);
        if (header.codec === WIRE_DELTA) {
          const n = stored[0];
          if (n < 1 || n > MAX_DELTA_REFS || stored.length < deltaHeaderBytes(n)) throw bad(`object stream: a delta names ${n} references (1 to ${MAX_DELTA_REFS})`);
          const refs: ObjectId[] = [];
          for (let i = 0; i < n; i++) refs.push(objectIdFromBytes(stored.subarray(1 + 32 * i, 33 + 32 * i)));
          const dictOffset = stored.readUInt32LE(1 + 32 * n);
          const dictLength = stored.readUInt32LE(5 + 32 * n);
          if (dictLength < 1 || dictOffset + dictLength > MAX_DELTA_DICT_BYTES) throw bad(`object stream: a delta's dictionary [${dictOffset}, +${dictLength}) is out of bounds`);
          yield { kind: header.kind, id: header.id, rawLength: header.rawLength, codec: WIRE_DELTA, refs, dictOffset, dictLength, stored: stored.subarray(deltaHeaderBytes(n)) };
        } else {
          yield { kind: header.kind, id: header.id, rawLength: header.rawLength, codec: header.codec as Codec, stored };
        }
        header = undefined;
        need = RECORD_HEADER;
        reserved = 0;
        account();
      }
    }
    exhausted = true;
  } finally {
    if (!exhausted) releaseAfterAnswer(source);
  }
  if (header || have > 0) throw new FerryError('TRANSFER_INTERRUPTED', 'object stream ended in the middle of an object');
}

/**
 * Stop a request whose body will not be read any further, once the answer to
 * it is out. For an HTTP/2 stream (duck-typed: replication does not import
 * HTTP), after the response has finished it is closed with NO_ERROR
 * (RST_STREAM after a complete response, RFC 9113 section 8.1): the peer stops
 * sending and the unread data held under flow control (up to a window) is
 * freed. Closing or destroying it before the answer would lose the answer;
 * leaving it open keeps the stream and its buffers until the peer gives up,
 * and holds up a graceful shutdown. Any other source is left alone.
 */
export function releaseAfterAnswer(source: unknown): void {
  const s = source as { close?: (code?: number) => void; once?: (event: string, fn: () => void) => unknown; writableFinished?: unknown; closed?: boolean; destroyed?: boolean } | null;
  if (!s || typeof s.close !== 'function' || typeof s.once !== 'function' || typeof s.writableFinished !== 'boolean') return;
  const close = () => {
    if (!s.closed && !s.destroyed) s.close!(0);
  };
  if (s.writableFinished) close();
  else s.once('finish', close);
}

// ---- missing: request = N ids of 32 bytes; response = bitmap, bit i set when id i is missing

export function encodeIds(ids: ObjectId[]): Buffer {
  const b = Buffer.allocUnsafe(ids.length * 32);
  ids.forEach((id, i) => objectIdToBytes(id).copy(b, i * 32));
  return b;
}

export function decodeIds(b: Buffer): ObjectId[] {
  if (b.length % 32 !== 0) throw bad(`id list of ${b.length} bytes is not a whole number of 32-byte ids`);
  const n = b.length / 32;
  if (n > MAX_IDS_PER_QUERY) throw bad(`id list of ${n} ids exceeds ${MAX_IDS_PER_QUERY}`);
  const out: ObjectId[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = objectIdFromBytes(b.subarray(i * 32, i * 32 + 32));
  return out;
}

export function encodeBitmap(bits: boolean[]): Buffer {
  const b = Buffer.alloc(Math.ceil(bits.length / 8));
  bits.forEach((v, i) => {
    if (v) b[i >> 3] |= 1 << (i & 7);
  });
  return b;
}

export function decodeBitmap(b: Buffer, n: number): boolean[] {
  if (b.length !== Math.ceil(n / 8)) throw bad(`bitmap of ${b.length} bytes does not answer ${n} ids`);
  const out: boolean[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = (b[i >> 3] & (1 << (i & 7))) !== 0;
  return out;
}

// ---- JSON messages

function obj(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(`${what} must be a JSON object`);
  return v as Record<string, unknown>;
}

function str(v: unknown, what: string, max = 256): string {
  if (typeof v !== 'string' || v.length > max) throw bad(`${what} must be a string of at most ${max} characters`);
  return v;
}

function wireName(v: unknown, what: string): string {
  try {
    return parseName(str(v, what), what);
  } catch (err) {
    throw bad(`${what}: ${(err as Error).message}`);
  }
}

export function parseHelloRequest(v: unknown): HelloRequest {
  const o = obj(v, 'hello');
  if (typeof o.protocol !== 'number') throw bad('hello.protocol must be a number (the replication protocol version)');
  if (o.protocol !== PROTOCOL_VERSION) {
    throw new FerryError('FORMAT_VERSION', `peer speaks replication protocol ${String(o.protocol)}, this site ${PROTOCOL_VERSION}: upgrade the older site`);
  }
  if (!Array.isArray(o.members) || o.members.length === 0 || o.members.length > MAX_SNAPSHOT_MEMBERS) {
    throw bad(`hello.members must be a list of 1 to ${MAX_SNAPSHOT_MEMBERS} members${Array.isArray(o.members) ? `, not ${o.members.length}` : ''}`);
  }
  const seen = new Set<string>();
  const members = o.members.map((m, i) => {
    const mo = obj(m, `hello.members[${i}]`);
    const name = wireName(mo.name, 'member');
    if (seen.has(name)) throw bad(`member ${name} appears twice`);
    seen.add(name);
    if (mo.kind !== 'tree' && mo.kind !== 'image') throw bad(`member ${name} has kind ${String(mo.kind)}`);
    return { name, kind: mo.kind as 'tree' | 'image' };
  });
  const req: HelloRequest = { protocol: PROTOCOL_VERSION, sourceVolume: wireName(o.sourceVolume, 'volume'), volume: wireName(o.volume, 'volume'), members };
  // Optional (older sources send none of them): what the destination keeps, the source's other
  // secondaries, and what the source calls the destination (older ones: its refusals say SITE).
  if (o.to !== undefined) req.to = wireName(o.to, 'site');
  if (o.keep !== undefined) req.keep = checkCount(o.keep, COUNT.keep, 'hello.keep', 'PROTOCOL');
  if (o.siblings !== undefined) {
    if (!Array.isArray(o.siblings) || o.siblings.length > MAX_SIBLINGS) throw bad(`hello.siblings must be a list of at most ${MAX_SIBLINGS} sites`);
    req.siblings = o.siblings.map((x, i) => {
      const what = `hello.siblings[${i}]`;
      const so = obj(x, what);
      const site = str(so.site, `${what}.site`, 64);
      if (!/^[A-Z2-7]{52}$/.test(site)) throw bad(`${what}.site is not a site id`);
      return {
        site,
        volume: wireName(so.volume, 'volume'),
        ...parseMirrorSettings(so, what),
        keep: so.keep === null || so.keep === undefined ? null : checkCount(so.keep, COUNT.keep, `${what} keep`, 'PROTOCOL'),
      };
    });
  }
  return req;
}

/**
 * A mirror's settings in a peer's message (a sibling in a hello, the schedule a failback or a migrate
 * hands over): each within the bounds every site checks them against (core/units.ts), so what one
 * site stored another never refuses. Older sources send no min or max delay: the defaults.
 */
export function parseMirrorSettings(v: unknown, what: string): { scheduleS: number | null; minDelayS: number; maxDelayS: number; bandwidth: number | null } {
  const o = obj(v, what);
  return checkScheduleSettings({
    scheduleS: o.scheduleS === null || o.scheduleS === undefined ? null : (o.scheduleS as number),
    minDelayS: (o.minDelayS ?? 0) as number,
    maxDelayS: (o.maxDelayS ?? 3600) as number,
    bandwidth: o.bandwidth === null || o.bandwidth === undefined ? null : (o.bandwidth as number),
  }, what, 'PROTOCOL');
}

/** Most replication snapshots a destination may be asked to keep, and most siblings one hello names. */
export const MAX_KEEP = COUNT.keep.max;
export const MAX_SIBLINGS = 256;

const SNAPSHOT_ID = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

export function parseCommitRequest(v: unknown): CommitRequest {
  const o = obj(v, 'commit');
  const snapshot = str(o.snapshot, 'commit.snapshot', 26);
  if (!SNAPSHOT_ID.test(snapshot)) throw bad('commit.snapshot is not a snapshot id');
  const manifest = str(o.manifest, 'commit.manifest', 64);
  if (!/^[0-9a-f]{64}$/.test(manifest)) throw bad('commit.manifest is not an object id');
  if (o.force !== undefined && typeof o.force !== 'boolean') throw bad('commit.force must be a boolean');
  if (o.peer !== undefined && typeof o.peer !== 'boolean') throw bad('commit.peer must be a boolean');
  if (o.baseline !== undefined && typeof o.baseline !== 'boolean') throw bad('commit.baseline must be a boolean');
  const ancestor = o.ancestor === undefined ? undefined : str(o.ancestor, 'commit.ancestor', 26);
  if (ancestor !== undefined && !SNAPSHOT_ID.test(ancestor)) throw bad('commit.ancestor is not a snapshot id');
  const after = o.after === undefined ? undefined : str(o.after, 'commit.after', 26);
  if (after !== undefined && !SNAPSHOT_ID.test(after)) throw bad('commit.after is not a snapshot id');
  if (o.seq !== undefined && !(Number.isSafeInteger(o.seq) && (o.seq as number) > 0)) throw bad('commit.seq must be a positive integer');
  const seq = o.seq as number | undefined;
  return { snapshot, manifest: manifest as ObjectId, force: o.force === true, peer: o.peer === true, ...(o.baseline === true ? { baseline: true } : {}), ...(ancestor !== undefined ? { ancestor } : {}), ...(after !== undefined ? { after } : {}), ...(seq !== undefined ? { seq } : {}) };
}

export function parseJson(b: Buffer, what: string): unknown {
  if (b.length > MAX_JSON_BYTES) throw bad(`${what} exceeds ${MAX_JSON_BYTES} bytes`);
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    throw bad(`${what} is not valid JSON`);
  }
}

// ---- answers: what the destination says back is checked as closely as what it is sent

/** A peer's answer as JSON (no size limit here: the client bounds what it reads), or PROTOCOL. */
export function parseAnswer(b: Buffer, what: string): unknown {
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    throw bad(`${what} is not valid JSON`);
  }
}

function nat(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${what} must be a whole number`);
  return v;
}

function optStr(v: unknown, what: string, max = 256): string | null {
  return v === null || v === undefined ? null : str(v, what, max);
}

function bool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw bad(`${what} must be true or false`);
  return v;
}

function list(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw bad(`${what} must be a list`);
  return v;
}

export function parseHelloResponse(v: unknown): HelloResponse {
  const o = obj(v, 'the answer to hello');
  const r: HelloResponse = {
    protocol: nat(o.protocol, 'hello answer protocol'),
    volume: str(o.volume, 'hello answer volume'),
    snapshots: list(o.snapshots, 'hello answer snapshots').map((x, i) => {
      const s = obj(x, `hello answer snapshots[${i}]`);
      return { id: str(s.id, `hello answer snapshots[${i}].id`, 26), name: optStr(s.name, `hello answer snapshots[${i}].name`), time: nat(s.time, `hello answer snapshots[${i}].time`) };
    }),
    applied: optStr(o.applied, 'hello answer applied', 26),
    applying: bool(o.applying, 'hello answer applying'),
    replicas: list(o.replicas, 'hello answer replicas').map((x, i) => {
      const m = obj(x, `hello answer replicas[${i}]`);
      if (m.kind !== 'tree' && m.kind !== 'image') throw bad(`hello answer replicas[${i}].kind must be tree or image`);
      return { name: str(m.name, `hello answer replicas[${i}].name`), kind: m.kind, path: str(m.path, `hello answer replicas[${i}].path`, 4096) };
    }),
  };
  if (o.delta !== undefined) r.delta = bool(o.delta, 'hello answer delta');
  return r;
}

export function parsePutResult(v: unknown): PutResult {
  const o = obj(v, 'the answer to a put');
  return { received: nat(o.received, 'put answer received'), stored: nat(o.stored, 'put answer stored'), bytes: nat(o.bytes, 'put answer bytes') };
}

export function parseCommitResponse(v: unknown): CommitResponse {
  const o = obj(v, 'the answer to commit');
  const r: CommitResponse = { snapshot: str(o.snapshot, 'commit answer snapshot', 26), applied: bool(o.applied, 'commit answer applied') };
  if (o.writesSnapshot !== undefined) r.writesSnapshot = str(o.writesSnapshot, 'commit answer writesSnapshot');
  if (o.refused !== undefined) r.refused = str(o.refused, 'commit answer refused', 4096);
  // timings, for status only: whatever is not a number is left out rather than refusing an apply that happened
  if (o.phases !== null && typeof o.phases === 'object' && !Array.isArray(o.phases)) {
    r.phases = Object.fromEntries(Object.entries(o.phases).filter(([, x]) => typeof x === 'number' && Number.isFinite(x)));
  }
  return r;
}
