// Apply for image members: bring an image replica (a file or a block device)
// from one image to another by writing the blocks that differ, in location
// order, in place (an image is patched where it is: docs/replication.md,
// "Applying"). A fresh file gets its zeros as holes.
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, lstatSync, openSync, writeSync, constants } from 'node:fs';
import { FerryError, wrapIoError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import { decodeBlockList, decodeImage } from '../snapshot/format.ts';
import { writeSparse } from '../snapshot/materialize.ts';
import { BLOCKS_PER_LIST } from '../snapshot/model.ts';
import type { ApplyOptions, ApplyStats } from './apply.ts';

/** Bring the image replica at `path` from image `from` (null: nothing) to image `to`: changed blocks, in location order. */
export function applyImage(path: string, from: ObjectId | null, to: ObjectId, o: ApplyOptions): ApplyStats {
  const stats: ApplyStats = { created: 0, updated: 0, removed: 0, metadata: 0, bytesWritten: 0 };
  const ib = decodeImage(o.store.get(to));
  const ia = from ? decodeImage(o.store.get(from)) : null;
  const comparable = ia !== null && ia.blockSize === ib.blockSize;
  const existed = existsSync(path);
  const st = existed ? lstatSync(path) : null;
  if (st && !st.isFile() && !st.isBlockDevice()) throw new FerryError('MEMBER_INVALID', `image replica ${path} is neither a regular file nor a block device`);
  const isDevice = st?.isBlockDevice() ?? false;
  let fd: number;
  try {
    fd = openSync(path, isDevice ? constants.O_WRONLY : constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw wrapIoError(err, `opening image replica ${path}`, { writing: true });
  }
  try {
    if (!isDevice) {
      const cur = fstatSync(fd).size;
      // A shrink or grow: a fresh (or resized) image must match exactly.
      if (cur !== ib.size) ftruncateSync(fd, ib.size);
    }
    const zero = Buffer.alloc(ib.blockSize);
    // A fresh image is all holes after ftruncate; an existing one must have zeroed blocks written.
    const holesNeedZeros = isDevice || from !== null;
    for (let li = 0; li < ib.lists.length; li++) {
      o.signal?.throwIfAborted();
      const lb = ib.lists[li];
      const la = comparable ? ia!.lists[li] : undefined;
      if (la === lb && from !== null) continue;
      const bb = decodeBlockList(o.store.get(lb)).blocks;
      const ba = la ? decodeBlockList(o.store.get(la)).blocks : [];
      for (let k = 0; k < bb.length; k++) {
        if (from !== null && k < ba.length && ba[k] === bb[k]) continue;
        const blockNo = li * BLOCKS_PER_LIST + k;
        const off = blockNo * ib.blockSize;
        const len = Math.min(ib.blockSize, ib.size - off);
        if (len <= 0) break;
        let data: Buffer | undefined;
        if (bb[k]) data = o.store.get(bb[k]!);
        else if (holesNeedZeros) data = zero.subarray(0, len);
        if (!data) continue;
        if (data.length !== len) throw new FerryError('OBJECT_CORRUPT', `image block ${blockNo} is ${data.length} bytes, expected ${len}`);
        if (holesNeedZeros) for (let w = 0; w < len; ) w += writeSync(fd, data, w, len - w, off + w);
        else writeSparse(fd, data, off); // a fresh file: zeros inside a block stay holes too
        stats.bytesWritten += len;
        stats.updated++;
      }
    }
    fsyncSync(fd);
  } catch (err) {
    throw wrapIoError(err, `writing image replica ${path}`);
  } finally {
    closeSync(fd);
  }
  return stats;
}

