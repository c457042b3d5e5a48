// Capture of an image member (a regular file or a block device): read in
// fixed blocks, each block a chunk (all-zero blocks are holes: a null id),
// 4096 block ids to a block list, the lists under an image object.
import { closeSync, fstatSync, lstatSync, openSync, readFileSync } from 'node:fs';
import { FerryError, wrapIoError } from '../core/errors.ts';
import type { ObjectId } from '../core/ids.ts';
import { encodeBlockList, encodeImage } from './format.ts';
import { BLOCKS_PER_LIST, DEFAULT_IMAGE_BLOCK_SIZE } from './model.ts';
import { emptyStats, putMeta, streamInto, type CaptureOptions, type CaptureStats } from './capture.ts';

/** Size of a regular file or block device, in bytes. */
export function imageSize(path: string): number {
  const st = lstatSync(path);
  if (st.isFile()) return st.size;
  if (st.isBlockDevice()) {
    // Node has no BLKGETSIZE64; the kernel publishes the size in 512-byte sectors.
    const rdev = st.rdev;
    const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
    const minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff);
    try {
      return Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim()) * 512;
    } catch (err) {
      throw wrapIoError(err, `finding the size of block device ${path}`);
    }
  }
  throw new FerryError('MEMBER_INVALID', `image member ${path} is neither a regular file nor a block device`);
}

/** Capture an image member in fixed blocks; returns the image manifest id. */
export async function captureImage(path: string, o: CaptureOptions & { blockSize?: number }): Promise<{ root: ObjectId; stats: CaptureStats }> {
  const blockSize = o.blockSize ?? DEFAULT_IMAGE_BLOCK_SIZE;
  const stats = emptyStats();
  let before;
  try {
    const fd = openSync(path, 'r');
    before = fstatSync(fd, { bigint: true });
    closeSync(fd);
  } catch (err) {
    throw wrapIoError(err, `opening image member ${path}`, { writing: false });
  }
  const size = imageSize(path);
  const blocks = Math.ceil(size / blockSize);
  const JOB_BLOCKS = Math.max(1, Math.floor((16 * 1024 * 1024) / blockSize));
  const pathBuf = Buffer.from(path);
  const lists: ObjectId[] = [];
  let current: Array<ObjectId | null> = [];
  // Blocks are stored as the workers produce them (streamed); jobs run a few
  // ahead of the consumer, which takes their ids in order for the block lists.
  const stream = streamInto(o.store, stats);
  const AHEAD = 2 * o.pool.workers + 2;
  const pending: Array<Promise<Array<ObjectId | null>>> = [];
  let nextBlock = 0;
  const launch = () => {
    const first = nextBlock;
    const count = Math.min(JOB_BLOCKS, blocks - first);
    nextBlock += count;
    const offset = first * blockSize;
    const length = Math.min(count * blockSize, size - offset);
    const job = o.pool.hashBlocks(pathBuf, offset, length, blockSize, stream).then((r) => {
      if (!r.ok) throw new FerryError('IO', `reading image ${path} at ${offset}: ${r.code} ${r.message}`);
      // a pool that collected the objects instead of streaming them (a wrapper that drops the options)
      for (const b of r.blocks) {
        if (b && o.store.putPrepared(b, { trusted: true })) {
          stats.objectsAdded++;
          stats.bytesAdded += b.rawLength;
          stats.bytesStored += b.stored.byteLength;
        }
      }
      return r.ids;
    });
    job.catch(() => {}); // awaited below in order; an early failure must not go unhandled meanwhile
    pending.push(job);
  };
  while (nextBlock < blocks && pending.length < AHEAD) launch();
  while (pending.length > 0) {
    o.signal?.throwIfAborted();
    const got = await pending.shift()!;
    if (nextBlock < blocks) launch();
    for (const id of got) {
      current.push(id);
      if (current.length === BLOCKS_PER_LIST) {
        lists.push(putMeta(o.store, 'blocklist', encodeBlockList({ blocks: current }), stats));
        current = [];
      }
    }
  }
  if (current.length > 0) lists.push(putMeta(o.store, 'blocklist', encodeBlockList({ blocks: current }), stats));
  stats.files = 1;
  stats.bytes = size;
  stats.bytesRead = size;
  stats.filesRead = 1;
  try {
    const after = lstatSync(path, { bigint: true });
    if (after.mtimeNs !== before.mtimeNs || after.size !== before.size) {
      o.onWarning?.({ path, problem: 'changed-during-read', message: 'image was written while being captured: the snapshot is crash-consistent at best (quiesce it with a pre hook)' });
    }
  } catch {
    // a vanished image shows up as an error on the next capture
  }
  const root = putMeta(o.store, 'image', encodeImage({ size, blockSize, lists }), stats);
  return { root, stats };
}
