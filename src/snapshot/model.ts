// The in-memory shapes of ferry's snapshot objects. Their byte encodings
// live in format.ts (the only module that knows them); everything else
// works with these types.
import type { ObjectId, SnapshotId } from '../core/ids.ts';

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

export interface TreeEntry {
  /** raw name bytes: not empty, no '/', no NUL, not '.' or '..'; need not be UTF-8 */
  name: Buffer;
  type: EntryType;
  /** permission bits including setuid, setgid and sticky (mode & 0o7777) */
  mode: number;
  uid: number;
  gid: number;
  /** modification time in nanoseconds since the epoch */
  mtimeNs: bigint;
  /** file: content length; symlink: target length; other types: 0 */
  size: number;
  /** extended attributes, sorted by name (empty where the platform gives no access) */
  xattrs: Array<[name: Buffer, value: Buffer]>;
  /** file: content chunks in order (empty for an empty file) */
  chunks?: ObjectId[];
  /** dir: the subdirectory's tree object */
  tree?: ObjectId;
  /** symlink: target bytes as stored (never followed); hardlink: member-relative path of the entry it links to */
  target?: Buffer;
  /** chardev/blockdev: device number */
  rdev?: number;
}

/** One directory: entries sorted by name bytes (Buffer.compare), names unique. */
export interface Tree {
  entries: TreeEntry[];
}

/**
 * A large directory, stored as pages (format-index.ts, dir-pages.ts): each page is a run of the
 * directory's sorted entries; together, in order, they are its entries.
 */
export interface TreeIndex {
  /** entries of the directory (the pages' counts added up) */
  count: number;
  pages: TreePage[];
}

/** One page of a TreeIndex: its object, how many entries it holds, its first and last entry names. */
export interface TreePage {
  id: ObjectId;
  count: number;
  first: Buffer;
  last: Buffer;
}

/** Block ids per blocklist object: 4096 blocks of 64 KiB = 256 MiB of image per list. */
export const BLOCKS_PER_LIST = 4096;
export const DEFAULT_IMAGE_BLOCK_SIZE = 64 * 1024;

/** An image member: fixed-size blocks, grouped into blocklist objects so diffs skip unchanged ranges. */
export interface ImageManifest {
  size: number;
  blockSize: number;
  /** ceil(ceil(size / blockSize) / BLOCKS_PER_LIST) blocklist ids */
  lists: ObjectId[];
}

/** Up to BLOCKS_PER_LIST block ids; null marks an all-zero block (a hole: nothing stored). */
export interface BlockList {
  blocks: Array<ObjectId | null>;
}

export type MemberKind = 'tree' | 'image';

export interface SnapshotMember {
  name: string;
  kind: MemberKind;
  /** tree member: root tree id; image member: image manifest id */
  root: ObjectId;
}

export interface SnapshotManifest {
  id: SnapshotId;
  volume: string;
  name: string | null;
  /** capture instant, milliseconds since the epoch */
  time: number;
  /** site id where the snapshot was taken */
  origin: string;
  parent: SnapshotId | null;
  members: SnapshotMember[];
}
