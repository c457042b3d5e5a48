// The operator docs cannot drift from the CLI: every `ferry ...` command in
// the fenced code blocks of docs/operator-guide.md, docs/runbooks/*.md and
// docs/command-mapping.md (and in inline code spans there, which the mapping
// table is made of) is parsed by the real commander program with every action
// replaced by a no-op: an unknown subcommand, an unknown option, a missing or
// an extra argument fails the test, naming the file and line. Relative links
// between these docs must point at files that exist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { CommanderError } from 'commander';
import { ROOT } from '../helpers.ts';
import { dryParse, shellWords } from '../harness/dry-parse.ts';

const DOCS = [
  'docs/operator-guide.md',
  'docs/command-mapping.md',
  ...readdirSync(join(ROOT, 'docs', 'runbooks')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/runbooks/${f}`),
];

interface DocCommand {
  file: string;
  line: number;
  text: string;
  argv: string[];
  /** an inline code span in prose, which may name a command without its arguments (`ferry restore`) */
  inline: boolean;
}

/**
 * The `ferry` command lines of a markdown file: in fenced blocks (after a `site$ ` prompt, or
 * `ExecStart=`; in a block without prompts, every line starting with `ferry `: in a block with
 * prompts, unprompted lines are output), and in inline code.
 */
function extractCommands(file: string): DocCommand[] {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
  const out: DocCommand[] = [];
  const prompted = /^\s*(?:[\w.-]*\$\s+|ExecStart=)(?:\S*\/)?ferry\s+(.*)$/;
  const bare = /^\s*(?:\S*\/)?ferry\s+(.*)$/;
  let fence: string | undefined;
  let blockHasPrompts = false;
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    const f = /^\s*(```+|~~~+)/.exec(line);
    if (f) {
      fence = fence ? (line.trim().startsWith(fence) ? undefined : fence) : f[1];
      if (fence) {
        let k = n + 1;
        blockHasPrompts = false;
        for (; k < lines.length && !lines[k].trim().startsWith(fence); k++) if (/^\s*[\w.-]*\$\s/.test(lines[k])) blockHasPrompts = true;
      }
      continue;
    }
    if (fence) {
      const m = prompted.exec(line) ?? (blockHasPrompts ? null : bare.exec(line));
      if (!m) continue;
      let text = m[1];
      const first = n;
      while (/\\$/.test(text) && n + 1 < lines.length) text = text.replace(/\\$/, ' ') + lines[++n].trim();
      out.push({ file, line: first + 1, text: `ferry ${text}`, argv: shellWords(text), inline: false });
      continue;
    }
    // In a table row (the command mapping) a span is a whole command; in prose it may be a name only.
    const inTable = line.trimStart().startsWith('|');
    for (const span of line.matchAll(/`(ferry\s[^`]+)`/g)) out.push({ file, line: n + 1, text: span[1], argv: shellWords(span[1].slice('ferry'.length)), inline: !inTable });
  }
  return out;
}

test('every ferry command in the operator docs is a real subcommand with real options and the right arguments', async () => {
  for (const f of DOCS) assert.ok(existsSync(join(ROOT, f)), `${f} is missing`);
  for (const rb of ['failover', 'failback', 'migrate', 'dr-test-link', 'peer-snapshots', 'needs-full-sync']) {
    assert.ok(DOCS.includes(`docs/runbooks/${rb}.md`), `runbook ${rb}.md is missing`);
  }
  const cmds = DOCS.flatMap(extractCommands);
  // Enough commands that this test means something, from every file.
  assert.ok(cmds.length >= 80, `only ${cmds.length} commands found`);
  for (const f of DOCS) assert.ok(cmds.some((c) => c.file === f), `no ferry command found in ${f}`);
  const failures: string[] = [];
  for (const c of cmds) {
    if (c.argv.includes('--help') || c.argv.includes('-h')) continue;
    try {
      await dryParse(c.argv);
    } catch (err) {
      if (err instanceof CommanderError && err.code === 'commander.version') continue;
      if (c.inline && err instanceof CommanderError && (err.code === 'commander.missingArgument' || err.code === 'commander.missingMandatoryOptionValue')) continue;
      const why = err instanceof CommanderError ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err);
      failures.push(`${c.file}:${c.line}: ${c.text}\n    ${why.trim()}`);
    }
  }
  assert.deepEqual(failures, [], `commands in the docs that the CLI does not accept:\n${failures.join('\n')}`);
});

test('the dry parse really refuses wrong commands (so the test above can fail)', async () => {
  await assert.rejects(dryParse(['mirror', 'snapmirror-break', 'app']), (e: unknown) => e instanceof CommanderError);
  await assert.rejects(dryParse(['mirror', 'update', 'app', '--no-such-option']), (e: unknown) => e instanceof CommanderError && e.code === 'commander.unknownOption');
  await assert.rejects(dryParse(['failover']), (e: unknown) => e instanceof CommanderError && e.code === 'commander.missingArgument');
  await assert.rejects(dryParse(['failover', 'app', 'extra']), (e: unknown) => e instanceof CommanderError && e.code === 'commander.excessArguments');
  await assert.rejects(dryParse(['mirror', 'create', 'app']), (e: unknown) => e instanceof CommanderError); // --to is required
  await assert.rejects(dryParse(['mirror']), (e: unknown) => e instanceof CommanderError);
  await dryParse(['mirror', 'update', 'app', '--to', 'b', '--wait', '--json', '--home', '/x']);
  assert.deepEqual(shellWords(` volume create db --pre 'fsfreeze -f /srv/db' --post "a b" # comment`), ['volume', 'create', 'db', '--pre', 'fsfreeze -f /srv/db', '--post', 'a b']);
  assert.deepEqual(shellWords(' serve --listen 0.0.0.0:7420 &'), ['serve', '--listen', '0.0.0.0:7420']);
});

test('relative links in the operator docs and the README point at files that exist', () => {
  const broken: string[] = [];
  for (const f of [...DOCS, 'README.md']) {
    const text = readFileSync(join(ROOT, f), 'utf8');
    for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
      if (!existsSync(resolve(dirname(join(ROOT, f)), target))) broken.push(`${f}: ${target}`);
    }
  }
  assert.deepEqual(broken, []);
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  for (const d of DOCS) assert.ok(readme.includes(`](${d})`), `README.md does not link ${d}`);
});
