// Byte encodings of ferry's structured objects: tree, image, blocklist and
// snapshot. This is the only module that knows them; docs/formats.md
// describes them byte by byte.
//
// Objects are content-addressed, so every encoding is canonical: a value has
// exactly one encoding, encoders refuse values that break an invariant, and
// decoders refuse any byte string that is not the encoding of a valid value
// (non-minimal varints, stray bits, unsorted names, trailing bytes...). For
// every accepted `b`, encode(decode(b)) equals `b`.
//
// Decoders treat their input as hostile (it may come from a peer): every
// count and length is checked against the bytes left before anything is
// allocated, and every failure is a FerryError('OBJECT_CORRUPT') naming the
// object kind, the field and the byte offset. Encoders report invalid values
// with the same code ("cannot encode ...").
import { FerryError } from '../core/errors.ts';
import { HASH_BYTES, parseName, parseSnapshotId, type ObjectId, type SnapshotId } from '../core/ids.ts';
import { BLOCKS_PER_LIST, type BlockList, type ImageManifest, type SnapshotManifest, type SnapshotMember } from './model.ts';
import { HEADER_BYTES, MAX_IMAGE_BLOCK_SIZE, MAX_ORIGIN_LENGTH, MAX_SNAPSHOT_MEMBERS, MAX_SNAPSHOT_STRING, MEMBER_KIND_BY_CODE, MEMBER_KIND_CODE, MIN_IMAGE_BLOCK_SIZE, PRINTABLE, Reader, fail, isNonNegInt, isObjectId, varintSize, writeHeader, writeId, writeVarint } from './format-core.ts';
export { FORMAT_VERSION, MAX_TREE_ENTRIES, MAX_FILE_CHUNKS, MAX_NAME_BYTES, MAX_TARGET_BYTES, MAX_XATTRS, MAX_XATTR_NAME_BYTES, MAX_XATTR_VALUE_BYTES, MAX_UID, MIN_IMAGE_BLOCK_SIZE, MAX_IMAGE_BLOCK_SIZE, MAX_SNAPSHOT_MEMBERS, MAX_ORIGIN_LENGTH, type FormatKind, compareNames, validateEntryName, sniffObjectKind } from './format-core.ts';
export { encodeTree, decodeTree } from './format-tree.ts';
export { encodeTreeIndex, decodeTreeIndex, MAX_INDEX_PAGES } from './format-index.ts';

// ----------------------------------------------------------------- images

/** Number of blocklists an image of `size` bytes in `blockSize` blocks has. */
export function blockListCount(size: number, blockSize: number): number {
  return Math.ceil(Math.ceil(size / blockSize) / BLOCKS_PER_LIST);
}

function checkImage(ctx: string, m: ImageManifest): void {
  if (m === null || typeof m !== 'object') fail(ctx, 'not an object');
  if (!isNonNegInt(m.size)) fail(ctx, `size ${m.size} is not a non-negative safe integer`);
  const bs = m.blockSize;
  if (!isNonNegInt(bs, MAX_IMAGE_BLOCK_SIZE) || bs < MIN_IMAGE_BLOCK_SIZE || (bs & (bs - 1)) !== 0) {
    fail(ctx, `block size ${bs} is not a power of two between ${MIN_IMAGE_BLOCK_SIZE} and ${MAX_IMAGE_BLOCK_SIZE}`);
  }
  if (!Array.isArray(m.lists)) fail(ctx, 'lists is not an array');
  const want = blockListCount(m.size, bs);
  if (m.lists.length !== want) fail(ctx, `${m.lists.length} blocklists, but size ${m.size} in ${bs}-byte blocks needs ${want}`);
  for (let i = 0; i < m.lists.length; i++) if (!isObjectId(m.lists[i])) fail(ctx, `blocklist ${i} is not an object id`);
}

export function encodeImage(m: ImageManifest): Buffer {
  checkImage('cannot encode image', m);
  const n = m.lists.length;
  const buf = Buffer.allocUnsafe(HEADER_BYTES + varintSize(m.size) + varintSize(m.blockSize) + varintSize(n) + n * HASH_BYTES);
  let p = writeHeader(buf, 'image');
  p = writeVarint(buf, p, m.size);
  p = writeVarint(buf, p, m.blockSize);
  p = writeVarint(buf, p, n);
  for (const id of m.lists) p = writeId(buf, p, id);
  return buf;
}

export function decodeImage(bytes: Uint8Array): ImageManifest {
  const r: Reader = new Reader(bytes, 'image');
  r.header('image');
  const size = r.varint('size');
  const blockSize = r.varint('block size');
  const n = r.varint('blocklist count');
  r.need(n * HASH_BYTES, `${n} blocklist ids`);
  const lists = new Array<ObjectId>(n);
  for (let i = 0; i < n; i++) lists[i] = r.id(`blocklist ${i}`);
  r.done();
  const m: ImageManifest = { size, blockSize, lists };
  checkImage(r.ctx, m);
  return m;
}

// ------------------------------------------------------------- blocklists

function checkBlockList(ctx: string, l: BlockList): number {
  if (l === null || typeof l !== 'object' || !Array.isArray(l.blocks)) fail(ctx, 'blocks is not an array');
  const n = l.blocks.length;
  if (n === 0 || n > BLOCKS_PER_LIST) fail(ctx, `${n} blocks, not 1..${BLOCKS_PER_LIST}`);
  let present = 0;
  for (let i = 0; i < n; i++) {
    const b = l.blocks[i];
    if (b === null) continue;
    if (!isObjectId(b)) fail(ctx, `block ${i} is neither null nor an object id`);
    present++;
  }
  return present;
}

export function encodeBlockList(l: BlockList): Buffer {
  const present = checkBlockList('cannot encode blocklist', l);
  const n = l.blocks.length;
  const mapBytes = (n + 7) >>> 3;
  const buf = Buffer.allocUnsafe(HEADER_BYTES + varintSize(n) + mapBytes + present * HASH_BYTES);
  let p = writeHeader(buf, 'blocklist');
  p = writeVarint(buf, p, n);
  const mapAt = p;
  buf.fill(0, mapAt, mapAt + mapBytes);
  p += mapBytes;
  for (let i = 0; i < n; i++) {
    const b = l.blocks[i];
    if (b === null) continue;
    buf[mapAt + (i >>> 3)] |= 1 << (i & 7);
    p = writeId(buf, p, b);
  }
  return buf;
}

export function decodeBlockList(bytes: Uint8Array): BlockList {
  const r: Reader = new Reader(bytes, 'blocklist');
  r.header('blocklist');
  const n = r.varint('block count');
  if (n === 0 || n > BLOCKS_PER_LIST) r.fail(`${n} blocks, not 1..${BLOCKS_PER_LIST}`);
  const mapBytes = (n + 7) >>> 3;
  r.need(mapBytes, 'presence bitmap');
  const mapAt = r.pos;
  const buf = r.buf;
  let present = 0;
  for (let k = 0; k < mapBytes; k++) {
    let v = buf[mapAt + k];
    while (v !== 0) {
      v &= v - 1;
      present++;
    }
  }
  if ((n & 7) !== 0 && buf[mapAt + mapBytes - 1] >>> (n & 7) !== 0) r.fail('presence bitmap has bits set past the last block');
  r.pos += mapBytes;
  r.need(present * HASH_BYTES, `ids of the ${present} blocks present`);
  const blocks = new Array<ObjectId | null>(n);
  for (let i = 0; i < n; i++) blocks[i] = buf[mapAt + (i >>> 3)] & (1 << (i & 7)) ? r.id(`block ${i}`) : null;
  r.done();
  return { blocks };
}

// -------------------------------------------------------------- snapshots

function checkSnapshotId(ctx: string, s: unknown, what: string): void {
  if (typeof s !== 'string') fail(ctx, `${what} is not a string`);
  let canonical: string;
  try {
    canonical = parseSnapshotId(s);
  } catch {
    fail(ctx, `${what} ${JSON.stringify(s.slice(0, 80))} is not a snapshot id (26-character ULID)`);
  }
  if (canonical !== s) fail(ctx, `${what} ${JSON.stringify(s)} is not in canonical (upper case) form`);
}

function checkName(ctx: string, s: unknown, what: string): void {
  if (typeof s !== 'string') fail(ctx, `${what} name is not a string`);
  try {
    parseName(s, what);
  } catch (err) {
    fail(ctx, err instanceof Error ? err.message : String(err));
  }
}

function checkSnapshot(ctx: string, s: SnapshotManifest): void {
  if (s === null || typeof s !== 'object') fail(ctx, 'not an object');
  checkSnapshotId(ctx, s.id, 'id');
  checkName(ctx, s.volume, 'volume');
  if (s.name !== null) checkName(ctx, s.name, 'snapshot');
  if (!isNonNegInt(s.time)) fail(ctx, `time ${s.time} is not a non-negative safe integer`);
  if (typeof s.origin !== 'string' || s.origin.length > MAX_ORIGIN_LENGTH || !PRINTABLE.test(s.origin)) {
    fail(ctx, `origin ${JSON.stringify(s.origin)} is not 1..${MAX_ORIGIN_LENGTH} printable ASCII characters`);
  }
  if (s.parent !== null) {
    checkSnapshotId(ctx, s.parent, 'parent');
    if (s.parent === s.id) fail(ctx, 'a snapshot cannot be its own parent');
  }
  const members = s.members;
  if (!Array.isArray(members)) fail(ctx, 'members is not an array');
  if (members.length === 0 || members.length > MAX_SNAPSHOT_MEMBERS) fail(ctx, `${members.length} members, not 1..${MAX_SNAPSHOT_MEMBERS}`);
  const seen = new Set<string>();
  for (let i = 0; i < members.length; i++) {
    const m = members[i];
    if (m === null || typeof m !== 'object') fail(ctx, `member ${i} is not an object`);
    checkName(ctx, m.name, 'member');
    if (seen.has(m.name)) fail(ctx, `member name ${JSON.stringify(m.name)} appears twice`);
    seen.add(m.name);
    if (typeof m.kind !== 'string' || !Object.hasOwn(MEMBER_KIND_CODE, m.kind)) fail(ctx, `member ${JSON.stringify(m.name)} has unknown kind ${JSON.stringify(m.kind)}`);
    if (!isObjectId(m.root)) fail(ctx, `member ${JSON.stringify(m.name)} root is not an object id`);
  }
}

export function encodeSnapshot(s: SnapshotManifest): Buffer {
  checkSnapshot('cannot encode snapshot', s);
  // every string is ASCII (checked above), so its length is its byte length
  const str = (v: string): number => varintSize(v.length) + v.length;
  let size = HEADER_BYTES + str(s.id) + str(s.volume) + 1 + (s.name === null ? 0 : str(s.name));
  size += varintSize(s.time) + str(s.origin) + 1 + (s.parent === null ? 0 : str(s.parent)) + varintSize(s.members.length);
  for (const m of s.members) size += str(m.name) + 1 + HASH_BYTES;
  const buf = Buffer.allocUnsafe(size);
  const writeStr = (p: number, v: string): number => {
    p = writeVarint(buf, p, v.length);
    return p + buf.write(v, p, 'latin1');
  };
  let p = writeHeader(buf, 'snapshot');
  p = writeStr(p, s.id);
  p = writeStr(p, s.volume);
  buf[p++] = s.name === null ? 0 : 1;
  if (s.name !== null) p = writeStr(p, s.name);
  p = writeVarint(buf, p, s.time);
  p = writeStr(p, s.origin);
  buf[p++] = s.parent === null ? 0 : 1;
  if (s.parent !== null) p = writeStr(p, s.parent);
  p = writeVarint(buf, p, s.members.length);
  for (const m of s.members) {
    p = writeStr(p, m.name);
    buf[p++] = MEMBER_KIND_CODE[m.kind];
    p = writeId(buf, p, m.root);
  }
  if (p !== size) throw new FerryError('INTERNAL', `snapshot encoding size mismatch: computed ${size}, wrote ${p}`);
  return buf;
}

export function decodeSnapshot(bytes: Uint8Array): SnapshotManifest {
  const r: Reader = new Reader(bytes, 'snapshot');
  r.header('snapshot');
  const flag = (what: string): boolean => {
    const f = r.u8(what);
    if (f > 1) r.fail(`${what} flag is ${f}, not 0 or 1`);
    return f === 1;
  };
  const id = r.ascii(MAX_SNAPSHOT_STRING, 'id') as SnapshotId;
  const volume = r.ascii(MAX_SNAPSHOT_STRING, 'volume');
  const name = flag('name present') ? r.ascii(MAX_SNAPSHOT_STRING, 'name') : null;
  const time = r.varint('time');
  const origin = r.ascii(MAX_ORIGIN_LENGTH, 'origin');
  const parent = flag('parent present') ? (r.ascii(MAX_SNAPSHOT_STRING, 'parent') as SnapshotId) : null;
  const count = r.varint('member count');
  if (count === 0 || count > MAX_SNAPSHOT_MEMBERS) r.fail(`${count} members, not 1..${MAX_SNAPSHOT_MEMBERS}`);
  // smallest member: 1-byte length, 1-byte name, kind, root id
  if (count * (3 + HASH_BYTES) > r.left) r.fail(`truncated: ${count} members cannot fit in ${r.left} bytes`);
  const members: SnapshotMember[] = [];
  for (let i = 0; i < count; i++) {
    const mname = r.ascii(MAX_SNAPSHOT_STRING, `member ${i} name`);
    const code = r.u8(`member ${i} kind`);
    const kind = MEMBER_KIND_BY_CODE[code];
    if (kind === undefined) r.fail(`member ${i}: unknown kind code ${code}`);
    const root = r.id(`member ${i} root`);
    members.push({ name: mname, kind, root });
  }
  r.done();
  const s: SnapshotManifest = { id, volume, name, time, origin, parent, members };
  checkSnapshot(r.ctx, s);
  return s;
}
