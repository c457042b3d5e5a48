// The soak's workload on a member's files, and the picks its actions make at run time (a file of a
// tree, a snapshot of a volume), as functions of the action's numbers and what is on disk or in the
// catalog then, so that a replay, and the reproduction script, do the same thing to the same state.
// Run directly it is the reproduction script's helper:
//   node test/soak/fileop.ts write KIND PATH OP PICK SIZE SEED
//   node test/soak/fileop.ts seed-data SEED KIND:PATH...
//   node test/soak/fileop.ts member HOME VOLUME MEMBER
//   node test/soak/fileop.ts pick HOME snapshot|named-snapshot|peer-snapshot|link VOLUME PICK
import { closeSync, existsSync, ftruncateSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { seededBytes, withCatalog } from './harness.ts';

export type WriteOp = 'new' | 'modify' | 'append' | 'truncate' | 'rename' | 'delete' | 'mkdir' | 'symlink' | 'image';
export const WRITE_OPS: readonly WriteOp[] = ['new', 'modify', 'append', 'truncate', 'rename', 'delete', 'mkdir', 'symlink', 'image'];

export interface Write {
  op: WriteOp;
  /** which entry (an index into the sorted listing, taken modulo its length) */
  pick: number;
  size: number;
  /** the content's seed (seededBytes) and the name's tag */
  seed: string;
}

const IMAGE_BLOCK = 4096;

/**
 * The most a tree member holds (bytes of its files). Over it, a write that would make the tree larger
 * (a new file, an append, a modify) deletes an entry instead: deletes keep pace with writes, so that
 * a run of hours stays within the sites' small filesystems (every site keeps each volume's data, a
 * replica of it, links to it and the snapshots retention keeps).
 */
export const TREE_BUDGET = 4 << 20;

/** Entries below `root` (member-relative, byte order), without ferry's staging area and temporaries. */
export function listEntries(root: string): Array<{ rel: string; dir: boolean; file: boolean }> {
  const out: Array<{ rel: string; dir: boolean; file: boolean }> = [];
  const walk = (rel: string) => {
    const abs = rel ? join(root, rel) : root;
    for (const n of readdirSync(abs)) {
      if ((rel === '' && n === '.ferry-stage') || n.startsWith('.ferry-tmp.')) continue;
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(join(root, r));
      out.push({ rel: r, dir: st.isDirectory(), file: st.isFile() });
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out.sort((a, b) => Buffer.compare(Buffer.from(a.rel), Buffer.from(b.rel)));
}

function tag(seed: string): string {
  return seed.replace(/[^A-Za-z0-9]/g, '').slice(-10);
}

/**
 * Apply one write to a member (a tree's directory, or an image file). Returns what it did, or why it
 * did nothing (no file to modify, say). Errors of the filesystem (a full disk) are thrown.
 */
/** What applyWrite answers when it changed nothing (the member had nothing to act on). */
export const WROTE_NOTHING: ReadonlySet<string> = new Set(['no image member', 'image missing', 'image empty', 'member missing', 'no file', 'nothing to rename', 'nothing to delete', 'nothing']);

export function applyWrite(kind: 'tree' | 'image', path: string, w: Write): string {
  if (kind === 'image' || w.op === 'image') {
    if (kind !== 'image') return 'no image member';
    if (!existsSync(path)) return 'image missing';
    const size = statSync(path).size;
    const blocks = Math.floor(size / IMAGE_BLOCK);
    if (blocks === 0) return 'image empty';
    const at = (w.pick % blocks) * IMAGE_BLOCK;
    const n = Math.min(w.size, size - at);
    const fd = openSync(path, 'r+');
    try {
      writeSync(fd, seededBytes(n, w.seed), 0, n, at);
    } finally {
      closeSync(fd);
    }
    return `image: ${n} bytes at ${at}`;
  }
  if (!existsSync(path)) return 'member missing';
  const entries = listEntries(path);
  const files = entries.filter((e) => e.file);
  if ((w.op === 'new' || w.op === 'append' || w.op === 'modify') && entries.length) {
    let bytes = 0;
    for (const f of files) bytes += lstatSync(join(path, f.rel)).size;
    if (bytes > TREE_BUDGET) {
      const e = entries[w.pick % entries.length].rel;
      rmSync(join(path, e), { recursive: true, force: true });
      return `delete ${e} (instead of ${w.op}: the tree holds ${bytes} bytes, over its ${TREE_BUDGET})`;
    }
  }
  const dirs = ['', ...entries.filter((e) => e.dir).map((e) => e.rel)];
  const abs = (rel: string) => (rel ? join(path, rel) : path);
  const t = tag(w.seed);
  switch (w.op) {
    case 'new': {
      const d = dirs[w.pick % dirs.length];
      const rel = d ? `${d}/f${t}` : `f${t}`;
      const fd = openSync(abs(rel), 'w');
      try {
        writeSync(fd, seededBytes(w.size, w.seed));
      } finally {
        closeSync(fd);
      }
      return `new ${rel} (${w.size} bytes)`;
    }
    case 'modify':
    case 'append':
    case 'truncate': {
      if (files.length === 0) return 'no file';
      const f = files[w.pick % files.length].rel;
      const size = statSync(abs(f)).size;
      const fd = openSync(abs(f), 'r+');
      try {
        if (w.op === 'truncate') {
          const to = (w.pick >>> 8) % (size + 1);
          ftruncateSync(fd, to);
          return `truncate ${f} to ${to}`;
        }
        const at = w.op === 'append' ? size : (w.pick >>> 8) % (size + 1);
        writeSync(fd, seededBytes(w.size, w.seed), 0, w.size, at);
        return `${w.op} ${f}: ${w.size} bytes at ${at}`;
      } finally {
        closeSync(fd);
      }
    }
    case 'rename': {
      if (entries.length === 0) return 'nothing to rename';
      const e = entries[w.pick % entries.length].rel;
      const to = join(dirname(e), `r${t}`);
      renameSync(abs(e), abs(to));
      return `rename ${e} to ${to}`;
    }
    case 'delete': {
      if (entries.length === 0) return 'nothing to delete';
      const e = entries[w.pick % entries.length].rel;
      rmSync(abs(e), { recursive: true, force: true });
      return `delete ${e}`;
    }
    case 'mkdir': {
      const d = dirs[w.pick % dirs.length];
      const rel = d ? `${d}/d${t}` : `d${t}`;
      mkdirSync(abs(rel), { recursive: true });
      return `mkdir ${rel}`;
    }
    case 'symlink': {
      const d = dirs[w.pick % dirs.length];
      const rel = d ? `${d}/l${t}` : `l${t}`;
      const target = files.length ? files[(w.pick >>> 4) % files.length].rel.split('/').pop()! : 'nowhere';
      symlinkSync(target, abs(rel));
      return `symlink ${rel} -> ${target}`;
    }
  }
  return 'nothing';
}

/** Size of an image member the soak creates. */
export const IMAGE_SIZE = 1 << 20;

/**
 * A volume's first data at the site that creates it: for a tree member a few directories of small
 * files and a symlink, for an image member a 1 MiB file with some blocks written; all from `seed`.
 */
export function seedData(members: Array<{ kind: 'tree' | 'image'; path: string }>, seed: string): void {
  for (const [i, m] of members.entries()) {
    if (m.kind === 'image') {
      mkdirSync(dirname(m.path), { recursive: true });
      closeSync(openSync(m.path, 'w'));
      const fd = openSync(m.path, 'r+');
      try {
        ftruncateSync(fd, IMAGE_SIZE);
      } finally {
        closeSync(fd);
      }
      for (let b = 0; b < 8; b++) applyWrite('image', m.path, { op: 'image', pick: b * 3, size: 8192, seed: `${seed}-${i}-img${b}` });
      continue;
    }
    mkdirSync(join(m.path, 'etc'), { recursive: true });
    mkdirSync(join(m.path, 'lib', 'deep'), { recursive: true });
    const dirs = ['', 'etc', 'lib', 'lib/deep'];
    for (let f = 0; f < 10; f++) {
      const rel = join(dirs[f % dirs.length], `seed${f}`);
      const fd = openSync(join(m.path, rel), 'w');
      try {
        writeSync(fd, seededBytes(1024 * (1 + ((f * 7) % 32)), `${seed}-${i}-${f}`));
      } finally {
        closeSync(fd);
      }
    }
    symlinkSync('seed0', join(m.path, 'link0'));
  }
}

export type PickKind = 'snapshot' | 'named-snapshot' | 'peer-snapshot' | 'link';

/** A snapshot of a volume (in the order the site recorded them), a peer snapshot, or a link path at a site; undefined when there is none. */
export function pickFromCatalog(home: string, kind: PickKind, volume: string, pick: number): string | undefined {
  const rows = withCatalog(home, (db) => {
    if (kind === 'link') return db.prepare('SELECT path AS v FROM links ORDER BY path').all();
    if (kind === 'peer-snapshot') return db.prepare("SELECT s.id AS v FROM snapshots s WHERE s.volume = ? AND EXISTS (SELECT 1 FROM holds h WHERE h.snapshot = s.id AND h.holder = 'peer') ORDER BY s.rowid").all(volume);
    if (kind === 'named-snapshot') return db.prepare('SELECT id AS v FROM snapshots WHERE volume = ? AND name IS NOT NULL ORDER BY rowid').all(volume);
    return db.prepare('SELECT id AS v FROM snapshots WHERE volume = ? ORDER BY rowid').all(volume);
  }) as Array<{ v: string }>;
  return rows.length ? rows[pick % rows.length].v : undefined;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [cmd, ...a] = process.argv.slice(2);
  if (cmd === 'write') {
    const [kind, path, op, pick, size, seed] = a;
    process.stdout.write(`${applyWrite(kind as 'tree' | 'image', path, { op: op as WriteOp, pick: Number(pick), size: Number(size), seed })}\n`);
  } else if (cmd === 'seed-data') {
    // seed-data SEED KIND:PATH...
    const [seed, ...members] = a;
    seedData(members.map((x) => ({ kind: x.slice(0, x.indexOf(':')) as 'tree' | 'image', path: x.slice(x.indexOf(':') + 1) })), seed);
  } else if (cmd === 'member') {
    // member HOME VOLUME MEMBER: its kind and path at that site (nothing, exit 3, when it has none)
    const [home, volume, member] = a;
    const m = withCatalog(home, (db) => db.prepare('SELECT kind, path FROM members WHERE volume = ? AND name = ?').get(volume, member)) as { kind: string; path: string } | undefined;
    if (!m) process.exit(3);
    process.stdout.write(`${m.kind} ${m.path}\n`);
  } else if (cmd === 'pick') {
    const [home, kind, volume, pick] = a;
    const v = pickFromCatalog(home, kind as PickKind, volume, Number(pick));
    if (v === undefined) process.exit(3);
    process.stdout.write(`${v}\n`);
  } else {
    process.stderr.write('usage: fileop.ts write KIND PATH OP PICK SIZE SEED | seed-data SEED KIND:PATH... | member HOME VOLUME MEMBER | pick HOME KIND VOLUME PICK\n');
    process.exit(2);
  }
}
