// A read-only look into the object index from another thread. Capture
// workers use it to skip compressing (and shipping) chunks the store already
// holds: on an incremental snapshot most chunks of a re-read file are
// unchanged. The answer only saves work, never decides correctness on its
// own: "known" means a committed `objects` row in a pack that is not lost
// (lost_packs: its file went missing or was found damaged; such objects must
// be stored again, see PackStore.has), and rows are only deleted by GC under
// the site lock that the capturing process holds; "unknown" (also the answer
// on any error, and from a catalog without lost_packs) just means the chunk is
// prepared and offered to the store, which deduplicates again.
//
// The catalog is in WAL mode, so these reads never block the writer and see
// every transaction committed before they start.
import { statSync } from 'node:fs';
import { DatabaseSync, type StatementSync } from 'node:sqlite';

/** What a producer thread needs to probe a store's index (PackStore.sharedIndex). */
export interface SharedIndexRef {
  /** the catalog file */
  path: string;
  /**
   * `dev:ino` of the catalog file when the ref was made. A connection is
   * used only for the file it was opened on: a catalog deleted and made
   * anew at the same path (tests do that with one long-lived pool) must
   * never answer for the old one. While a connection is open its inode
   * cannot be reused, so the pair names one file.
   */
  file: string;
}

/** The ref for the catalog at `path`, or undefined when it is not a file. */
export function sharedIndexRef(path: string): SharedIndexRef | undefined {
  if (path === '' || path === ':memory:' || path.startsWith('file:')) return undefined;
  try {
    const st = statSync(path);
    return st.isFile() ? { path, file: `${st.dev}:${st.ino}` } : undefined;
  } catch {
    return undefined;
  }
}

const MAX_OPEN = 4;
/** The same question as PackStore.has asks of the index: a row, in a pack not marked lost. */
const KNOWN_SQL = 'SELECT 1 FROM objects o WHERE o.id = ? AND NOT EXISTS (SELECT 1 FROM lost_packs l WHERE l.pack = o.pack)';
const RAW_LENGTH_SQL = 'SELECT raw_length AS n FROM objects WHERE id = ?';

interface Conn {
  db: DatabaseSync;
  stmt: StatementSync;
  rawLength: StatementSync;
}

/** Read-only connections by catalog path, least recently used first. */
export class IndexProbe {
  readonly #open = new Map<string, Conn | null>();

  /** Whether the index `ref` names has a row for the 32-byte id `idBytes`; undefined when it cannot tell. */
  known(ref: SharedIndexRef, idBytes: Uint8Array): boolean | undefined {
    const c = this.#conn(ref);
    if (!c) return undefined;
    try {
      return c.stmt.get(idBytes) !== undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The length of the object `idBytes` names, as the index records it; undefined when it has no row
   * or cannot tell. A hint only (chunk-worker.ts: where a file's old chunks ended): what it is used
   * for is checked against the bytes.
   */
  rawLength(ref: SharedIndexRef, idBytes: Uint8Array): number | undefined {
    const c = this.#conn(ref);
    if (!c) return undefined;
    try {
      const n = (c.rawLength.get(idBytes) as { n: number } | undefined)?.n;
      return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  }

  #conn(ref: SharedIndexRef): Conn | null {
    const key = `${ref.file}\0${ref.path}`;
    let c = this.#open.get(key);
    if (c !== undefined) {
      this.#open.delete(key);
      this.#open.set(key, c);
      return c;
    }
    c = null; // not a catalog, gone, or another file now: never ask it
    try {
      // timeout 0: a busy database answers "unknown" at once rather than stalling the worker
      const db = new DatabaseSync(ref.path, { readOnly: true, timeout: 0 } as ConstructorParameters<typeof DatabaseSync>[1]);
      try {
        const st = statSync(ref.path);
        if (`${st.dev}:${st.ino}` === ref.file) c = { db, stmt: db.prepare(KNOWN_SQL), rawLength: db.prepare(RAW_LENGTH_SQL) };
      } finally {
        if (!c) db.close();
      }
    } catch {
      // c stays null
    }
    if (this.#open.size >= MAX_OPEN) {
      const [oldPath, old] = this.#open.entries().next().value as [string, { db: DatabaseSync } | null];
      this.#open.delete(oldPath);
      try {
        old?.db.close();
      } catch {
        // closing a read-only connection cannot lose anything
      }
    }
    this.#open.set(key, c);
    return c;
  }

  close(): void {
    for (const c of this.#open.values()) {
      try {
        c?.db.close();
      } catch {
        // as above
      }
    }
    this.#open.clear();
  }
}
