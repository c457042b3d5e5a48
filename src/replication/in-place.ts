// Patching a large file of a replica in place. The apply otherwise writes a
// changed file beside its target and renames it into place; for a large file
// changed in a few places that costs a copy of the whole file before the few
// chunks are written. In place, only the chunks that differ are written, into
// the replica's own file.
//
// The price is that the file is half old, half new while it is patched, and a
// crash leaves it so. That is safe only because the apply journals each file
// before it touches it (`InPlaceRecord`, kept in the catalog until the apply
// completes): for every range the patch writes, the hash of what was there
// before and the chunk that goes there. An apply cut part way is finished by
// the next one, which first asks which of the replica's differences from
// both sides are someone else's writes (mid-apply.ts); a file journaled here
// is the apply's own work exactly when every range of it holds either its old
// bytes or its new chunk, and every range the patch keeps holds what both
// sides agree on (`isOwnWork`). Anything else (an operator's write during the
// cut, or a write torn by a power loss) is kept as a write, like any other.
//
// Only a plain file is patched: a regular file with one link (a patch through
// another link would change a file the snapshot does not name) whose size
// and mtime are what the writes check found (else it is written whole, as
// before).
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, constants } from 'node:fs';
import { wrapIoError } from '../core/errors.ts';
import { crashPoint } from '../core/crash.ts';
import { hashBytes, type ObjectId } from '../core/ids.ts';
import type { ObjectReader } from '../store/types.ts';
import type { TreeEntry } from '../snapshot/model.ts';
import { HOLE_BLOCK, patchPlan, setOpenFileMeta, writeAll, type MetaContext } from '../snapshot/materialize.ts';

/** What a patch in place will do to one file, journaled before its first write. */
export interface InPlaceRecord {
  /** the file's size before and after */
  fromSize: number;
  toSize: number;
  /** `to`'s chunks in order: [offset, length, id, hash of the bytes there before, up to the old end (null: all beyond it; kept ranges: absent)] */
  chunks: Array<[at: number, len: number, id: ObjectId, before?: ObjectId | null]>;
  /** a file that shrinks: its old tail past the new end, in ranges with their hashes (it is cut before anything is written) */
  tail?: Array<[at: number, len: number, hash: ObjectId]>;
}

/** Receives a file's record before it is patched; must make it durable before returning. */
export type InPlaceJournal = (record: InPlaceRecord) => void;

const MAX_RANGE = 64 * 1024 * 1024;
const TAIL_RANGE = 4 * 1024 * 1024;

/**
 * Patch file `p` (which holds entry `from`, as the writes check found it) into entry `to` in place.
 * Returns the bytes written, or undefined when the file is not one to patch in place (nothing done:
 * the caller writes it whole). Metadata is set on the open file once its content is in.
 */
export function patchInPlace(store: ObjectReader, p: Buffer, from: TreeEntry, to: TreeEntry, ctx: MetaContext, journal: InPlaceJournal): number | undefined {
  const plan = patchPlan(store, from, to);
  if (!plan) return undefined;
  let fd: number;
  try {
    fd = openSync(p, constants.O_RDWR | constants.O_NOFOLLOW);
  } catch {
    return undefined; // gone or not a file since the writes check: written whole
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    // As the writes check found it, and only this name for it.
    if (!st.isFile() || st.nlink !== 1n || st.size !== BigInt(from.size) || st.mtimeNs / 1000n !== from.mtimeNs / 1000n) return undefined;
    const writes = new Set(plan.write.map((w) => w.at));
    const record: InPlaceRecord = { fromSize: from.size, toSize: to.size, chunks: [] };
    const buf = Buffer.allocUnsafe(Math.min(MAX_RANGE, plan.write.reduce((n, w) => Math.max(n, w.len), TAIL_RANGE)));
    for (const c of plan.chunks) {
      if (!writes.has(c.at)) {
        record.chunks.push([c.at, c.len, c.id]);
        continue;
      }
      // What is there now, so a cut patch can tell its own work from anyone else's.
      const before = c.at < from.size ? hashBytes(readRange(fd, buf, c.at, Math.min(c.len, from.size - c.at))) : null;
      record.chunks.push([c.at, c.len, c.id, before]);
    }
    if (from.size > to.size) {
      record.tail = [];
      for (let at = to.size; at < from.size; at += TAIL_RANGE) {
        const len = Math.min(TAIL_RANGE, from.size - at);
        record.tail.push([at, len, hashBytes(readRange(fd, buf, at, len))]);
      }
    }
    journal(record);
    // A shorter file is cut first: part way, the file is then never longer than the new one.
    if (from.size > to.size) ftruncateSync(fd, to.size);
    let written = 0;
    for (const w of plan.write) {
      const data = store.get(w.id);
      // Block by block, only what differs from what is there: a block the same as before is left
      // alone (a hole stays a hole); past the old end, zeros are left as holes.
      const there = w.at < from.size ? readRange(fd, buf, w.at, Math.min(w.len, from.size - w.at)) : EMPTY;
      written += writeDiffering(fd, data, there, w.at);
      // Test hook (FERRY_TEST_CRASH_AT=apply:in-place-mid): the file half old, half new.
      crashPoint('apply:in-place-mid');
    }
    ftruncateSync(fd, to.size);
    setOpenFileMeta(fd, p, to, ctx);
    return written;
  } catch (err) {
    throw wrapIoError(err, `patching ${p} in place`, { writing: true });
  } finally {
    closeSync(fd);
  }
}

const EMPTY = Buffer.alloc(0);

/** Write the HOLE_BLOCK-aligned blocks of `data` (at file offset `at`) that differ from `there` (what the file holds from `at`); returns the bytes written. */
function writeDiffering(fd: number, data: Buffer, there: Buffer, at: number): number {
  let written = 0;
  let run = -1;
  const flush = (end: number) => {
    if (run < 0) return;
    writeAll(fd, data, run, end, at + run);
    written += end - run;
    run = -1;
  };
  for (let i = 0; i < data.length; ) {
    const end = Math.min(data.length, i + HOLE_BLOCK - ((at + i) % HOLE_BLOCK));
    const same = end <= there.length ? data.subarray(i, end).equals(there.subarray(i, end)) : i >= there.length && isZero(data, i, end);
    if (same) flush(i);
    else if (run < 0) run = i;
    i = end;
  }
  flush(data.length);
  return written;
}

function isZero(b: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}

function readRange(fd: number, buf: Buffer, at: number, len: number): Buffer {
  const out = len <= buf.length ? buf.subarray(0, len) : Buffer.allocUnsafe(len);
  let done = 0;
  while (done < len) {
    const n = readSync(fd, out, done, len - done, at + done);
    if (n <= 0) break;
    done += n;
  }
  return out.subarray(0, done);
}

/**
 * Whether the file at `p` holds only a patch's own work: every range of `to` holds the chunk that
 * goes there or (a range the patch writes) what was there before, and the file's size is one a cut
 * patch leaves (the old size, the new one, or in between where every range up to it is whole).
 * Reads the whole file; only asked of files an apply cut part way journaled.
 */
export function isOwnWork(p: Buffer, record: InPlaceRecord): boolean {
  let fd: number;
  try {
    fd = openSync(p, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return false;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return false;
    const size = st.size;
    const low = Math.min(record.fromSize, record.toSize);
    const high = Math.max(record.fromSize, record.toSize);
    if (size < low || size > high) return false;
    const buf = Buffer.allocUnsafe(Math.min(MAX_RANGE, record.chunks.reduce((n, c) => Math.max(n, c[1]), TAIL_RANGE)));
    if (size > record.toSize) {
      // Not cut yet, so nothing was written: the old tail must be as it was.
      if (size !== record.fromSize) return false;
      for (const [at, len, hash] of record.tail ?? []) {
        const got = readRange(fd, buf, at, len);
        if (got.length !== len || hashBytes(got) !== hash) return false;
      }
    }
    for (const [at, len, id, before] of record.chunks) {
      if (at >= size) {
        // Beyond the end: only a range the patch appends may be missing, and then whole.
        if (before !== null) return false;
        continue;
      }
      const got = readRange(fd, buf, at, Math.min(len, size - at));
      if (got.length === len && hashBytes(got) === id) continue;
      // A kept range changed, or an appended one is torn or wrong: not the patch's doing.
      if (before === undefined || before === null) return false;
      if (hashBytes(got) !== before) return false;
    }
    return true;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

const ID = /^[0-9a-f]{64}$/;
const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/**
 * A record as the catalog kept it (JSON), checked field by field; undefined when it is not one (a
 * damaged row): the file is then not taken as the apply's own work, so what it holds is kept.
 */
export function parseInPlaceRecord(json: string | undefined): InPlaceRecord | undefined {
  if (json === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (!isCount(r.fromSize) || !isCount(r.toSize) || !Array.isArray(r.chunks)) return undefined;
  for (const c of r.chunks as unknown[]) {
    if (!Array.isArray(c) || c.length < 3 || c.length > 4 || !isCount(c[0]) || !isCount(c[1]) || typeof c[2] !== 'string' || !ID.test(c[2])) return undefined;
    if (c.length === 4 && c[3] !== null && !(typeof c[3] === 'string' && ID.test(c[3]))) return undefined;
  }
  if (r.tail !== undefined) {
    if (!Array.isArray(r.tail)) return undefined;
    for (const t of r.tail as unknown[]) {
      if (!Array.isArray(t) || t.length !== 3 || !isCount(t[0]) || !isCount(t[1]) || typeof t[2] !== 'string' || !ID.test(t[2])) return undefined;
    }
  }
  return r as unknown as InPlaceRecord;
}
