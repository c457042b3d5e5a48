// Every command ferry's messages tell an operator to run is one the CLI
// accepts: each `ferry ...` in backticks inside a string or template literal
// under src/ (TypeScript's own parser reads them, so comments do not count) is
// parsed by the real commander program with every action a no-op
// (harness/dry-parse.ts). A subcommand that does not exist, an option the
// command does not offer, or an extra argument fails the test, naming the file
// and line. What `${...}` puts in is a word here (a volume, a site); a command
// named without its arguments (`ferry failback`) is a mention and may omit
// them. Whether a command is accepted in the state the message is given in is
// not something a parse can see: the tests of each refusal run its advice
// (e.g. integration/secondary-removed-path.test.ts, suggestedCommand).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CommanderError } from 'commander';
import ts from 'typescript';
import { ROOT } from '../../helpers.ts';
import { dryParse, shellWords } from '../../harness/dry-parse.ts';

const SRC = join(ROOT, 'src');

/** What a `${...}` becomes: an ordinary word, as a volume or a site name would be. */
const PLACEHOLDER = 'x1';

interface Suggestion {
  file: string;
  line: number;
  text: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/**
 * The placeholder a `${...}` falls back to when its value is not known (`${peer ?? 'SITE'}`,
 * `${known ? name : 'SITE'}`): the command names it then, and the test below must see it.
 */
function fallbackWord(e: ts.Expression): string | undefined {
  const word = (x: ts.Expression) => (ts.isStringLiteral(x) && /^[A-Z][A-Z0-9_]+$/.test(x.text) ? x.text : undefined);
  if (ts.isParenthesizedExpression(e)) return fallbackWord(e.expression);
  if (ts.isBinaryExpression(e) && (e.operatorToken.kind === ts.SyntaxKind.QuestionQuestionToken || e.operatorToken.kind === ts.SyntaxKind.BarBarToken)) return word(e.right);
  if (ts.isConditionalExpression(e)) return word(e.whenFalse) ?? word(e.whenTrue);
  return undefined;
}

/** The text of every string and template literal of a file (a template's `${...}` as PLACEHOLDER, or the placeholder it falls back to), with its line. */
function literals(file: string): Array<{ line: number; text: string }> {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: Array<{ line: number; text: string }> = [];
  const visit = (n: ts.Node) => {
    let text: string | undefined;
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) text = n.text;
    else if (ts.isTemplateExpression(n)) text = n.head.text + n.templateSpans.map((s) => (fallbackWord(s.expression) ?? PLACEHOLDER) + s.literal.text).join('');
    if (text !== undefined) out.push({ line: sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1, text });
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** The backticked `ferry ...` commands of src/; a literal that opens one and does not close it is reported as such. */
function suggestions(): { found: Suggestion[]; unclosed: Suggestion[] } {
  const found: Suggestion[] = [];
  const unclosed: Suggestion[] = [];
  for (const path of sourceFiles(SRC)) {
    const file = relative(ROOT, path);
    for (const { line, text } of literals(path)) {
      for (const m of text.matchAll(/`ferry\s([^`]*)(`?)/g)) {
        (m[2] ? found : unclosed).push({ file, line, text: `ferry ${m[1]}` });
      }
    }
  }
  return { found, unclosed };
}

test('every `ferry ...` command a message in src/ suggests is a real subcommand with real options and arguments', async () => {
  const { found, unclosed } = suggestions();
  // Enough of them that this test means something, from messages of most layers.
  assert.ok(found.length >= 120, `only ${found.length} suggested commands found`);
  assert.deepEqual(unclosed.map((s) => `${s.file}:${s.line}: ${s.text}`), [], 'a command split over several literals cannot be checked: keep each in one');
  const failures: string[] = [];
  for (const s of found) {
    // `...` abbreviates what the reader fills in (`ferry site add ... --id NEW`).
    const argv = shellWords(s.text.slice('ferry'.length)).filter((w) => w !== '...');
    if (argv.includes('--help')) continue;
    try {
      await dryParse(argv);
    } catch (err) {
      if (err instanceof CommanderError && (err.code === 'commander.version' || err.code === 'commander.missingArgument' || err.code === 'commander.missingMandatoryOptionValue')) continue;
      // A `${...}` where the CLI takes one of a few words (`ferry completion ${shell}`): the program's value, not the text's.
      if (err instanceof CommanderError && err.code === 'commander.invalidArgument' && err.message.includes(`'${PLACEHOLDER}'`)) continue;
      const why = err instanceof CommanderError ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err);
      failures.push(`${s.file}:${s.line}: ${s.text}\n    ${why.trim()}`);
    }
  }
  assert.deepEqual(failures, [], `commands suggested in src/ that the CLI does not accept:\n${failures.join('\n')}`);
});

test('the extraction finds a template\'s command with its placeholders, and the parse refuses what the CLI refuses', async () => {
  const { found } = suggestions();
  const initialize = found.filter((s) => s.file === 'src/replication/driver/plan.ts' && s.text === `ferry mirror initialize ${PLACEHOLDER} --to ${PLACEHOLDER}`);
  assert.ok(initialize.length >= 1, 'plan.ts\'s advice to initialize is found');
  assert.ok(!found.some((s) => s.file === 'src/replication/driver/run.ts' && /^ferry [^`]*`/.test(s.text)), 'a span stops at its closing backtick');
  assert.ok(found.some((s) => s.file === 'src/dr/journal.ts' && s.text === `ferry migrate ${PLACEHOLDER} --to SITE`), "a `${...}` falling back to a placeholder (`to ?? 'SITE'`) is read as that placeholder");
  await assert.rejects(dryParse(shellWords(`mirror initialize ${PLACEHOLDER} --to ${PLACEHOLDER} --full`)), (e: unknown) => e instanceof CommanderError && e.code === 'commander.unknownOption');
  await assert.rejects(dryParse(['mirror', 'snapmirror-break', PLACEHOLDER]), (e: unknown) => e instanceof CommanderError);
  await assert.rejects(dryParse(['failover', PLACEHOLDER, PLACEHOLDER]), (e: unknown) => e instanceof CommanderError && e.code === 'commander.excessArguments');
});

/**
 * Where a suggested command still names a placeholder (an upper-case word: VOL, SITE, PATH, NAME...),
 * also as the fallback of a `${...}` (fallbackWord), and why the value is not known where it is said. A command whose value is known there names it
 * (a `${...}`): a new placeholder fails the test until it is filled in, or listed here with its reason.
 * src/core/errors.ts documents each code in general: its commands name no particular volume or site.
 */
const PLACEHOLDERS_LEFT: Record<string, string> = {
  'src/catalog/peers.ts: ferry site add NAME URL --id ID': "the site's URL and id: only its operator knows them (its name too, where the one asked for is no valid site name)",
  'src/catalog/mirrors.ts: ferry mirror create x1 --to SITE': 'the volume has no mirror and none was named: where to mirror it is the operator\'s choice',
  'src/dr/journal.ts: ferry migrate x1 --to SITE': 'a migrate journal that records no target (none this ferry writes): unknown',
  'src/config/schema.ts: ferry site add NAME URL --id ID': 'a hint about a key of the file: no site in question',
  'src/config/export.ts: ferry site add NAME URL --id ID': 'no site paired yet',
  'src/config/plan.ts: ferry site add x1 https://HOST:PORT --id ID': "the site's URL and id: only its operator knows them",
  'src/app/daemon.ts: ferry site add NAME URL --id x1': 'an unknown site: the name it is paired under and its URL are the operator\'s choice',
  'src/dr/failback.ts: ferry site add NAME URL --id x1': 'a site paired no more (its pairing removed): the name and URL it is paired under are the operator\'s choice',
  'src/dr/repoint.ts: ferry mirror repoint x1 --to NAME:x1': 'an unpaired site: the name it is paired under is the operator\'s choice',
  'src/cli/commands/dr.ts: ferry restore x1 --snapshot x1 --target DIR': 'where to restore is the operator\'s choice',
  'src/cli/commands/mirror.ts: ferry restore VOLUME --snapshot x1 --target DIR': 'where to restore is the operator\'s choice (the volume is said beside it)',
  'src/cli/commands/peers.ts: ferry site add NAME https://HOST:PORT --id ID': 'no sites paired: nothing known',
  'src/cli/commands/link.ts: ferry link create PATH --volume VOLUME': 'no links: nothing known',
  'src/cli/commands/volume.ts: ferry volume create NAME --member PATH': 'no volumes: nothing known',
  'src/cli/commands/mirror.ts: ferry mirror create VOLUME --to SITE': 'no mirrors: nothing known',
  'src/cli/commands/snapshot.ts: ferry snapshot create x1 --peer --name NAME': 'a new snapshot\'s name is the operator\'s choice',
  'src/replication/receive/intake.ts: ferry mirror create x1 --to x1:NAME': 'another volume name at the destination: the operator\'s choice',
  'src/site/peers.ts: ferry serve --listen HOST:PORT': 'the address to listen on is the operator\'s choice',
};

test('a suggested command names a placeholder only where its value is not known (listed with why)', () => {
  const { found } = suggestions();
  const words = (text: string) => text.split(/\s+/).flatMap((w) => w.split(/[=:]/));
  const left = new Set(found.filter((s) => s.file !== 'src/core/errors.ts' && words(s.text).some((w) => /^[A-Z][A-Z0-9_]+$/.test(w))).map((s) => `${s.file}: ${s.text}`));
  const unlisted = [...left].filter((k) => !(k in PLACEHOLDERS_LEFT));
  assert.deepEqual(unlisted, [], 'a command names a placeholder: fill in the value where it is known, or list it in PLACEHOLDERS_LEFT with why it is not');
  const stale = Object.keys(PLACEHOLDERS_LEFT).filter((k) => !left.has(k));
  assert.deepEqual(stale, [], 'listed placeholders no longer found: drop them from PLACEHOLDERS_LEFT');
});
