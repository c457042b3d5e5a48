// The receiving end sits in the replication layer (docs/design.md, "Layers"): every module under
// src/replication/receive/ imports only from core, store, snapshot, catalog and replication, with
// static, dynamic and type-only imports alike; what it needs of the site comes through ReceiveHost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { ROOT } from '../../../helpers.ts';

const SRC = join(ROOT, 'src');
const DIR = join(SRC, 'replication', 'receive');
const BELOW = ['core', 'store', 'snapshot', 'catalog', 'replication'];

/** Every module specifier `file` imports: import and export declarations, import() and import types. */
function specifiers(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: string[] = [];
  const visit = (n: ts.Node) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) out.push(n.moduleSpecifier.text);
    else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && n.arguments[0] && ts.isStringLiteral(n.arguments[0])) out.push(n.arguments[0].text);
    else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) out.push(n.argument.literal.text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

test('replication/receive imports nothing above the replication layer', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length >= 5, `modules found: ${files.join(', ')}`);
  const up: string[] = [];
  for (const f of files) {
    for (const spec of specifiers(join(DIR, f))) {
      if (!spec.startsWith('.')) continue; // node: modules
      const layer = relative(SRC, resolve(dirname(join(DIR, f)), spec)).split(sep)[0];
      if (!BELOW.includes(layer)) up.push(`${f} imports ${spec} (layer ${layer})`);
    }
  }
  assert.deepEqual(up, []);
});
