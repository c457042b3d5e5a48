// The site's tables are reached through src/catalog/ only (docs/design.md,
// "Layers"): no module outside src/catalog/ and src/store/ (the object index)
// holds SQL, calls a database handle, or imports the SQLite wrapper. Every
// source file under src/ is parsed (TypeScript's own parser), so comments and
// prose in error messages are not mistaken for SQL: only string and template
// literals are read, and only text shaped like a statement counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import ts from 'typescript';
import { ROOT } from '../helpers.ts';

const SRC = join(ROOT, 'src');

/** Where SQL belongs: the catalog's tables, the store's own object index, and the SQLite wrapper itself. */
const ALLOWED = [`src${sep}catalog${sep}`, `src${sep}store${sep}`];
const WRAPPER = `src${sep}core${sep}sqlite.ts`;

/** Statements as ferry writes them (keywords in capitals); one shape each, so that prose does not match. */
const STATEMENTS: RegExp[] = [
  /\bSELECT\b[\s\S]*\bFROM\b/,
  /\bSELECT\s+(1|\*|count\(|EXISTS)\b/,
  /\bINSERT\s+(OR\s+[A-Z]+\s+)?INTO\b/,
  /\bUPDATE\s+(OR\s+[A-Z]+\s+)?\w+\s+SET\b/,
  /\bDELETE\s+FROM\b/,
  /\bREPLACE\s+INTO\b/,
  /\b(CREATE|DROP)\s+(TEMP\s+|UNIQUE\s+)?(TABLE|INDEX|TRIGGER|VIEW)\b/,
  /\bALTER\s+TABLE\b/,
  /\bPRAGMA\s+\w+/,
  /\bWITH\s+RECURSIVE\b/,
];

function looksLikeSql(text: string): boolean {
  return STATEMENTS.some((re) => re.test(text));
}

/** Methods that run SQL on a handle (core/sqlite.ts Sqlite, node:sqlite DatabaseSync). */
const DB_METHODS = new Set(['run', 'get', 'all', 'exec', 'prepare', 'stmt']);

interface Finding {
  file: string;
  line: number;
  what: string;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** What in one file's text is SQL outside the catalog: literals shaped like statements, calls on a `db`, imports of SQLite. */
function findSql(file: string, text: string): Finding[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: Finding[] = [];
  const at = (n: ts.Node, what: string) => found.push({ file, line: sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1, what });
  const visit = (n: ts.Node): void => {
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) {
      if (looksLikeSql(n.text)) at(n, `SQL in a string: ${n.text.slice(0, 80)}`);
    } else if (ts.isTemplateExpression(n)) {
      const joined = n.head.text + n.templateSpans.map((s) => `?${s.literal.text}`).join('');
      if (looksLikeSql(joined)) at(n, `SQL in a template: ${joined.slice(0, 80)}`);
    } else if (ts.isCallExpression(n) && ts.isPropertyAccessExpression(n.expression) && DB_METHODS.has(n.expression.name.text)) {
      const target = n.expression.expression;
      if (ts.isPropertyAccessExpression(target) && target.name.text === 'db') at(n, `a query on a database handle: ${n.expression.getText(sf).slice(0, 80)}`);
    } else if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      const spec = n.moduleSpecifier.text;
      if (spec === 'node:sqlite' || spec === 'sqlite' || spec.endsWith('/core/sqlite.ts')) at(n, `imports ${spec}`);
    } else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = n.arguments[0];
      if (arg && ts.isStringLiteral(arg) && (arg.text === 'node:sqlite' || arg.text.endsWith('/core/sqlite.ts'))) at(n, `imports ${arg.text}`);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

/** The text of every string and template literal in a file, with its line (a template's substitutions read as `?`). */
function literals(file: string, text: string): Array<{ line: number; text: string }> {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: Array<{ line: number; text: string }> = [];
  const visit = (n: ts.Node): void => {
    const line = () => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) out.push({ line: line(), text: n.text });
    else if (ts.isTemplateExpression(n)) out.push({ line: line(), text: n.head.text + n.templateSpans.map((s) => `?${s.literal.text}`).join('') });
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** Statements that change a table, and the table they change. */
const WRITES = /\b(?:INSERT(?:\s+OR\s+[A-Z]+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+[A-Z]+)?|DELETE\s+FROM)\s+([a-z_]+)\b/g;

function tablesWritten(text: string): string[] {
  return [...text.matchAll(WRITES)].map((m) => m[1]);
}

/**
 * The one module of src/catalog/ that writes each table (docs/design.md, "Catalog"): holds.ts is the
 * only writer of `holds`, whose rows keep snapshots alive. schema.ts, which creates the tables, their
 * first rows and triggers, is the exception.
 */
const TABLE_OWNER: Record<string, string> = {
  meta: 'meta.ts',
  events: 'events.ts',
  volumes: 'volumes.ts',
  members: 'volumes.ts',
  snapshots: 'snapshots.ts',
  snapshot_gone: 'snapshots.ts',
  holds: 'holds.ts',
  mirrors: 'mirrors.ts',
  secondaries: 'secondaries.ts',
  peer_snapshots: 'peer-snapshots.ts',
  split_brains: 'split-brains.ts',
  peer_deletions: 'peer-snapshots.ts',
  peers: 'peers.ts',
  links: 'links.ts',
  workflows: 'workflows.ts',
  stat_cache: 'stat-cache.ts',
  stat_cache_dirs: 'stat-cache.ts',
  stat_cache_data: 'stat-cache.ts',
  stat_cache_rows: 'stat-cache.ts',
  stat_cache_owner: 'stat-cache.ts',
  apply_in_place: 'secondaries.ts',
  apply_written: 'secondaries.ts',
  stage_written: 'secondaries.ts',
  counters: 'counters.ts',
};

test('no SQL outside src/catalog/ and src/store/', () => {
  const findings: Finding[] = [];
  let scanned = 0;
  for (const path of sourceFiles(SRC)) {
    const rel = relative(ROOT, path);
    if (ALLOWED.some((a) => rel.startsWith(a)) || rel === WRAPPER) continue;
    scanned++;
    findings.push(...findSql(rel, readFileSync(path, 'utf8')));
  }
  assert.ok(scanned > 50, `only ${scanned} files scanned: is src/ where this test looks (${SRC})?`);
  assert.deepEqual(
    findings.map((f) => `${f.file}:${f.line}: ${f.what}`),
    [],
    'SQL belongs in src/catalog/ (one module per table) or src/store/ (the object index): add a function there and call it',
  );
});

test('the SQL check finds statements, calls on a handle and SQLite imports, and not prose', () => {
  const code = [
    "import { Sqlite } from '../core/sqlite.ts';",
    "const a = site.catalog.db.get('SELECT 1 FROM holds WHERE snapshot = ?', id);",
    'const b = `SELECT ${cols} FROM mirrors WHERE id = ?`;',
    "const c = \"INSERT OR IGNORE INTO holds (snapshot, holder) VALUES (?, ?)\";",
    "const d = 'UPDATE OR REPLACE holds SET holder = ?';",
    "const e = x.db.run(sql);",
    "// SELECT the newest snapshot FROM the list: a comment is not SQL",
    "throw new FerryError('USAGE', 'delete it with `ferry snapshot delete`, or update the mirror first');",
    "const f = `select a snapshot from ${volume} to update it`;",
    "const g = list.get('x');",
  ].join('\n');
  const lines = findSql('sample.ts', code).map((f) => f.line);
  assert.deepEqual([...new Set(lines)], [1, 2, 3, 4, 5, 6]);
  assert.equal(looksLikeSql('DELETE FROM holds WHERE holder = ?'), true);
  assert.equal(looksLikeSql('WITH RECURSIVE up(id) AS (SELECT parent FROM snapshots)'), true);
  assert.equal(looksLikeSql('PRAGMA table_info(mirrors)'), true);
  assert.equal(looksLikeSql('Deleted from the catalog; update the mirror, then select another'), false);
});

test('each table of the catalog is written by its own module only (holds by holds.ts)', () => {
  const dir = join(SRC, 'catalog');
  const wrong: string[] = [];
  const writers = new Map<string, Set<string>>();
  for (const path of sourceFiles(dir)) {
    const module = relative(dir, path);
    if (module === 'schema.ts') continue;
    for (const l of literals(module, readFileSync(path, 'utf8'))) {
      for (const table of tablesWritten(l.text)) {
        const owner = TABLE_OWNER[table];
        if (owner === undefined) wrong.push(`src/catalog/${module}:${l.line}: writes ${table}, which has no owner here: add it to TABLE_OWNER (one module per table)`);
        else if (owner !== module) wrong.push(`src/catalog/${module}:${l.line}: writes ${table}, which only ${owner} writes: call a function of ${owner}`);
        writers.set(table, (writers.get(table) ?? new Set()).add(module));
      }
    }
  }
  assert.deepEqual(wrong, []);
  assert.deepEqual([...(writers.get('holds') ?? [])], ['holds.ts'], 'holds are written (by holds.ts) at all: is src/catalog/ where this test looks?');
});

test('the writer check names the table each statement changes, and nothing in prose or reads', () => {
  assert.deepEqual(tablesWritten('INSERT OR IGNORE INTO holds (snapshot, holder) VALUES (?, ?)'), ['holds']);
  assert.deepEqual(tablesWritten('UPDATE OR REPLACE holds SET holder = ? WHERE holder = ?'), ['holds']);
  assert.deepEqual(tablesWritten('DELETE FROM holds WHERE snapshot IN (SELECT id FROM snapshots WHERE volume = ?)'), ['holds']);
  assert.deepEqual(tablesWritten('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'), ['meta']);
  assert.deepEqual(tablesWritten('SELECT h.holder FROM holds h JOIN snapshots s ON s.id = h.snapshot'), []);
  assert.deepEqual(tablesWritten('update the mirror first, then delete from the list'), []);
});
